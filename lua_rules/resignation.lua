-- Arts. 53 and 60(2): who must resign, and by when, to run for office or to campaign.
--
-- Art. 53(1): public officials (elected ones too: local government heads and local council
-- members are political public officials), full-time executives of government-invested
-- organizations and local public corporations, journalists and others must resign by D-90 to
-- run. Its proviso: a National Assembly member running for the Assembly or the presidency, and a
-- local government head or council member running for the head or the council of the same local
-- government, keep their office.
-- Art. 53(2): D-30 instead when running for a proportional seat (item 1), in a by- or vacancy
-- election (item 2; a presidential vacancy election counts, Art. 35(4)), as a National Assembly
-- member for the head of a local government (item 3), or as a local council member for the head
-- or council of ANOTHER local government (item 4).
-- Art. 53(5): a local government head running for an Assembly constituency that is the same as or
-- overlaps their jurisdiction must resign by D-120. Its text speaks of the Assembly's general
-- election; in a by-election (whose cause may come after D-120) epcs applies 53(2)2's D-30.
-- Sources: the Act as amended by Act 19855; NEC releases for the 9th local elections (Seoul,
-- 2026-02-26; Hongseong, 2026-01-15) and for the 8th (2022-04-25): "지방자치단체장이나 지방의회
-- 의원이 그 직을 가지고 해당 지방자치단체에 입후보하는 경우에는 사직하지 않아도 된다".
-- Missing a deadline voids the registration (Art. 52(1)5).
-- Not modelled: a proportional member running in a by-election of their own body must resign
-- before applying for registration (53(3)/(4)); epcs holds no registration dates.
--
-- Art. 60(2): reserve-force company commanders and above, residents' self-governance committee
-- members and heads of tong/ri/ban must resign by D-90 to become campaign officials or workers;
-- for a by-election, by 5 days after its cause was confirmed when that is later.
-- Both are judged on the day the head of the institution RECEIVED the resignation
-- (received_date); when it was accepted does not matter. Deadlines on a Sunday or holiday are
-- not moved.
--
-- Facts beyond the seat and the received date, each asked for only when it decides:
--   local_race                in a nationwide local election: governor or local_head (both a
--                             head's race) or council (a one-race election names its office
--                             itself); the advertising area reads the same fact
--   same_local_government     a head or council member running for the head or council of the
--                             local government they serve (53(1) proviso, 53(2)4)
--   constituency_overlaps_jurisdiction  a head running for an Assembly constituency (53(5))

local D, fmt = epcs.D, epcs.fmt

-- 53(1)'s D-90, or 53(2)2's D-30 in a by- or vacancy election.
local run_deadline = epcs.deadline {last_day = D(90), by_election = D(30)}
local constituency_deadline = epcs.deadline {last_day = D(90)}
local proportional_deadline = epcs.deadline {last_day = D(30)}
local overlap_deadline = epcs.deadline {last_day = D(120)}
local official_deadline = epcs.deadline {last_day = D(90), after_cause_confirmed = 5}

local PENALTY_60 = "Art. 255(1): imprisonment of up to 3 years or a fine of up to KRW 6 million"

local MUST_RESIGN_TO_RUN = {
    public_official = {"a public official", "공무원"},
    journalist = {"a journalist", "언론인"},
    gov_invested_org_executive = {"a full-time executive of a government-invested organization",
                                  "정부투자기관의 상근 임원"},
    local_public_corp_executive = {"a full-time executive of a local public corporation",
                                   "지방공사·지방공단의 상근 임원"},
    na_member = {"a National Assembly member", "국회의원"},
    local_government_head = {"a local government head", "지방자치단체의 장"},
    local_council_member = {"a local council member", "지방의회의원"},
}

local MUST_RESIGN_TO_CAMPAIGN = {
    reserve_force_commander = {"a reserve-force company commander or higher",
                               "향토예비군 중대장 이상의 간부"},
    residents_committee_member = {"a residents' self-governance committee member",
                                  "주민자치위원회 위원"},
    tong_ri_ban_head = {"a head of a tong, ri or ban", "통·리·반의 장"},
}

local LOCAL_OFFICES = {local_government_head = true, local_council = true}

-- Kinds that say what a person does in the campaign or in life, not which post they hold:
-- Art. 53(1) turns on the post, so the answer asks for it instead of assuming none.
local POST_UNNAMED = {
    candidate = true, prospective_candidate = true, party_member = true, publisher = true,
    author = true, other = true,
}

local COVERAGE = epcs.coverage {
    {
        activities = {"run_for_office"},
        -- The kinds that name no post (a candidate, an author, ...) are judged too: they are
        -- asked which post the person holds (POST_UNNAMED below).
        covers = {"public_official", "journalist", "gov_invested_org_executive",
                  "local_public_corp_executive", "na_member", "local_government_head",
                  "local_council_member", "candidate", "prospective_candidate", "party_member",
                  "publisher", "author", "other"},
        left_out = {
            {
                -- NEC releases list these posts under Art. 60(2) only (e.g. 2020-01-07, for
                -- the 21st Assembly election): they bar campaigning, not running.
                kinds = {"voter", "reserve_force_commander", "residents_committee_member",
                         "tong_ri_ban_head"},
                article = "53(1)",
                reason = "Art. 53(1) lists the posts to be resigned before running (public officials, elected ones included, full-time executives of government-invested organizations, local public corporations and cooperatives, private school teachers who may not join a party, journalists and others); this actor kind holds none of them.",
                reason_ko = "제53조제1항은 입후보 전에 그만두어야 하는 직(선거로 취임하는 공무원을 포함한 공무원, 정부투자기관·지방공사·지방공단·조합의 상근 임원, 정당의 당원이 될 수 없는 사립학교 교원, 언론인 등)을 정하고 있으며, 이 행위자는 그 어느 직에도 해당하지 않습니다.",
            },
            {
                kinds = {"business", "media_company", "platform"},
                article = "53(1)",
                reason = "Art. 53(1) binds persons who intend to run; an organization does not run for office.",
                reason_ko = "제53조제1항은 후보자가 되려는 사람에게 적용되며, 단체는 입후보하지 않습니다.",
            },
        },
        probe = {election = "na22", date = "2024-01-05",
                 activity = {kind = "run_for_office", seat = "constituency",
                             received_date = "2024-01-05"}},
    },
    {
        activities = {"become_campaign_official"},
        covers = {"reserve_force_commander", "residents_committee_member", "tong_ri_ban_head"},
        left_out = {{
            kinds = {"voter", "party_member", "candidate", "prospective_candidate", "na_member",
                     "local_council_member", "local_government_head", "public_official",
                     "journalist", "gov_invested_org_executive", "local_public_corp_executive",
                     "publisher", "author", "business", "media_company", "platform", "other"},
            article = "60(2)",
            reason = "Art. 60(2) sets a resignation deadline only for reserve-force commanders, residents' committee members and heads of tong, ri or ban; public officials and others whom Art. 60(1) bars from campaigning while in office have no such deadline.",
            reason_ko = "제60조제2항의 사직 기한은 향토예비군 중대장 이상의 간부, 주민자치위원회 위원, 통·리·반의 장에게만 적용되며, 제60조제1항에 따라 재직 중 선거운동을 할 수 없는 공무원 등에게는 이러한 기한이 없습니다.",
        }},
        probe = {election = "na22", date = "2024-01-05",
                 activity = {kind = "become_campaign_official", received_date = "2024-01-05"}},
    },
}

local function needs(article, missing, reason, reason_ko, deadline)
    return epcs.needs_facts {article = article, missing = missing, reason = reason,
                             reason_ko = reason_ko, deadline = deadline}
end

-- On or before the deadline the resignation counts; after it, it does not.
local function judge(q, article, deadline, who, penalty, consequence, consequence_ko)
    local received = q.activity.received_date
    if received <= deadline then
        return epcs.allowed {
            article = article,
            deadline = deadline,
            reason = string.format(
                "As %s, the resignation received on %s meets the deadline of %s (Art. %s).",
                who[1], fmt(received), fmt(deadline), article),
            reason_ko = string.format(
                "%s의 사직원이 %s에 접수되어 기한(%s)을 지켰습니다 (%s).",
                who[2], fmt(received), fmt(deadline), epcs.cite_ko(article)),
        }
    end
    return epcs.prohibited {
        article = article,
        deadline = deadline,
        penalty = penalty,
        reason = string.format(
            "As %s, the resignation had to be received by %s; received on %s it is late: %s.",
            who[1], fmt(deadline), fmt(received), consequence),
        reason_ko = string.format(
            "%s의 사직원은 %s까지 접수되어야 하나 %s에 접수되어 늦었습니다. %s",
            who[2], fmt(deadline), fmt(received), consequence_ko),
    }
end

-- The office keeps: no resignation at all.
local function keeps_office(exception, deadline, reason, reason_ko)
    return epcs.allowed {article = "53", deadline = deadline, exception = exception,
                         reason = reason, reason_ko = reason_ko}
end

-- A local race as Art. 53 tells them apart: a head's or a council's.
local OFFICE_OF_RACE = {
    governor = "local_government_head", local_head = "local_government_head",
    council = "local_council",
}

-- The office run for: the election's own, or in a nationwide local election the race named.
local function office_of(q)
    local office = q.election.office
    if office == "local_office" then
        return OFFICE_OF_RACE[q.activity.local_race]
    end
    return office
end

-- Which deadline applies (article, deadline rule, why), or a verdict that ends the question.
-- Each step follows Art. 53 as summarised at the top of the file.
local function which_deadline(q)
    local kind, election, activity = q.actor.kind, q.election, q.activity
    local office, by_election = office_of(q), election.kind ~= "general"
    local local_race = election.office == "local_office" or LOCAL_OFFICES[election.office]
    local elected_locally = kind == "local_government_head" or kind == "local_council_member"

    if kind == "na_member" and (office == "national_assembly" or office == "president") then
        return nil, keeps_office("sitting_na_member", run_deadline:day(election),
            "A sitting National Assembly member running for the Assembly or the presidency need not resign (Art. 53(1) proviso).",
            "국회의원이 국회의원선거나 대통령선거에 그 직을 가지고 입후보하는 경우에는 사직하지 않아도 됩니다 (제53조제1항 단서).")
    end
    if local_race and (kind == "na_member" or elected_locally) then
        local wanted = {}
        if office == nil then
            wanted[#wanted + 1] = "activity.local_race"
        end
        if elected_locally and activity.same_local_government == nil then
            wanted[#wanted + 1] = "activity.same_local_government"
        end
        if #wanted > 0 then
            return nil, needs("53", wanted,
                "For an elected official running in a local election the office sought and whether it is their own local government's decide Art. 53 (its proviso, 53(2)3 and 53(2)4).",
                "선거로 취임한 사람이 지방선거에 입후보하는 경우에는 어느 직에 입후보하는지와 자신이 속한 지방자치단체의 선거인지에 따라 제53조(제1항 단서, 제2항제3호·제4호)의 적용이 달라집니다.",
                run_deadline:day(election))
        end
        if elected_locally and activity.same_local_government then
            return nil, keeps_office("same_local_government", run_deadline:day(election),
                "A local government head or council member running for the head or council of the same local government need not resign (Art. 53(1) proviso).",
                "지방자치단체의 장이나 지방의회의원이 해당 지방자치단체의 장 또는 의회의원 선거에 그 직을 가지고 입후보하는 경우에는 사직하지 않아도 됩니다 (제53조제1항 단서).")
        end
        if kind == "na_member" and office == "local_government_head" then
            return "53(2)", proportional_deadline
        end
        if kind == "local_council_member" then
            return "53(2)", proportional_deadline
        end
    end
    if by_election then
        return "53(2)", proportional_deadline
    end
    if office == "president" or office == "local_government_head" then
        return "53", constituency_deadline
    end
    if activity.seat == nil then
        return nil, needs("53", {"activity.seat"},
            "A constituency seat must be resigned for by D-90, a proportional one by D-30 (Art. 53(1), 53(2)1).",
            "지역구는 선거일 전 90일, 비례대표는 선거일 전 30일까지 사직해야 하므로 선거구 구분을 알아야 합니다 (제53조제1항, 제2항제1호).",
            constituency_deadline:day(election))
    end
    if activity.seat == "proportional" then
        return "53(2)", proportional_deadline
    end
    if kind == "local_government_head" and office == "national_assembly" then
        local overlaps = activity.constituency_overlaps_jurisdiction
        if overlaps == nil then
            return nil, needs("53(5)", {"activity.constituency_overlaps_jurisdiction"},
                "A local government head running for an Assembly constituency that overlaps their jurisdiction must resign by D-120, otherwise by D-90 (Art. 53(5), 53(1)).",
                "지방자치단체의 장이 그 관할구역과 같거나 겹치는 지역구국회의원선거에 입후보하려면 선거일 전 120일까지, 그 밖에는 선거일 전 90일까지 사직해야 합니다 (제53조제5항, 제1항).",
                overlap_deadline:day(election))
        end
        if overlaps then
            return "53(5)", overlap_deadline
        end
    end
    return "53", constituency_deadline
end

local function run_for_office(q)
    if POST_UNNAMED[q.actor.kind] then
        return needs("53", {"actor.kind"}, string.format(
            "Art. 53(1) turns on the post the person holds, which actor kind '%s' does not name: ask again with the post's kind (public_official, journalist, local_council_member, ...), or voter when the person holds none; posts without a kind here (private school teachers, cooperative executives, election commissioners and the others Art. 53(1) lists) have the same deadlines as public officials.",
            q.actor.kind), string.format(
            "제53조제1항은 그 사람이 가진 직에 따라 적용되는데 행위자 구분(%s)으로는 알 수 없습니다: 해당 직(공무원, 언론인, 지방의회의원 등)으로, 아무 직도 없으면 voter로 다시 문의하십시오. 이 목록에 없는 직(사립학교 교원, 조합 상근 임원, 선거관리위원회 위원 등 제53조제1항의 다른 직)도 공무원과 같은 기한이 적용됩니다.",
            q.actor.kind), run_deadline:day(q.election))
    end
    local article, rule = which_deadline(q)
    if article == nil then
        return rule
    end
    local deadline = rule:day(q.election)
    if q.activity.received_date == nil then
        return needs(article, {"activity.received_date"},
            "Art. 53 is judged on the day the head of the institution received the resignation.",
            "제53조는 소속기관의 장이 사직원을 접수한 날을 기준으로 판단합니다.", deadline)
    end
    return judge(q, article, deadline, MUST_RESIGN_TO_RUN[q.actor.kind], nil,
        "the candidate registration would be void (Art. 52(1)5)",
        "후보자등록은 무효가 됩니다 (제52조제1항제5호).")
end

local function become_campaign_official(q)
    local election = q.election
    local deadline = official_deadline:day(election)
    local who = MUST_RESIGN_TO_CAMPAIGN[q.actor.kind]
    if q.activity.received_date == nil then
        return needs("60(2)", {"activity.received_date"},
            "Art. 60(2) is judged on the day the head of the institution received the resignation.",
            "제60조제2항은 소속기관의 장이 사직원을 접수한 날을 기준으로 판단합니다.", deadline)
    end
    return judge(q, "60(2)", deadline, who, PENALTY_60,
        "such a person may not act as a campaign official or worker",
        "선거사무관계자가 될 수 없습니다.")
end

local function evaluate(q, version)
    local missing = epcs.missing(q, "actor.kind", "activity.kind")
    if missing then
        return needs("53", missing, "Who resigns and for what decide Arts. 53 and 60(2).",
            "누가 무엇을 위하여 사직하는지 알아야 제53조와 제60조제2항을 적용할 수 있습니다.",
            run_deadline:day(q.election))
    end
    local campaign = q.activity.kind == "become_campaign_official"
    local left_out = COVERAGE:left_out(q)
    if left_out then
        -- With the deadline of the provision asked about, which the version's cannot be for both.
        return epcs.allowed {
            article = left_out.article, exception = left_out.exception,
            reason = left_out.reason, reason_ko = left_out.reason_ko,
            deadline = (campaign and official_deadline or run_deadline):day(q.election),
        }
    end
    if campaign then
        return become_campaign_official(q)
    end
    return run_for_office(q)
end

-- The deadlines that apply to an election, for its calendar.
local function calendar(election, version)
    local items = {}
    local function add(article, deadline, title, title_ko)
        items[#items + 1] = {article = article, rule = version.id, day = deadline:day(election),
                             title = title, title_ko = title_ko}
    end
    if election.kind ~= "general" then
        add("53(2)", proportional_deadline, "Resignation deadline to run (by-/vacancy election, D-30)",
            "입후보를 위한 사직 기한 (재·보궐·궐위선거, 선거일 전 30일)")
    elseif election.office == "president" then
        add("53", constituency_deadline, "Resignation deadline to run (D-90)",
            "입후보를 위한 사직 기한 (선거일 전 90일)")
    else
        add("53", constituency_deadline, "Resignation deadline to run for a constituency seat (D-90)",
            "지역구 입후보를 위한 사직 기한 (선거일 전 90일)")
        add("53(2)", proportional_deadline,
            "Resignation deadline to run for proportional representation (D-30)",
            "비례대표 입후보를 위한 사직 기한 (선거일 전 30일)")
        if election.office == "national_assembly" then
            add("53(5)", overlap_deadline,
                "Resignation deadline for a local government head running for a constituency overlapping their jurisdiction (D-120)",
                "관할구역과 겹치는 지역구국회의원선거에 입후보하려는 지방자치단체의 장의 사직 기한 (선거일 전 120일)")
        else
            add("53(2)", proportional_deadline,
                "Resignation deadline for an Assembly member running for local government head, or a council member for another local government (D-30)",
                "국회의원이 지방자치단체의 장 선거에, 지방의회의원이 다른 지방자치단체의 선거에 입후보하는 경우의 사직 기한 (선거일 전 30일)")
        end
    end
    add("60(2)", official_deadline, "Resignation deadline to become a campaign official (D-90)",
        "선거사무관계자가 되기 위한 사직 기한 (선거일 전 90일)")
    return items
end

return epcs.area {
    name = "resignation",
    article = "53",
    coverage = COVERAGE,
    title = "Resignation deadlines",
    title_ko = "공무원 등의 사직 기한",
    -- The resignation counts on the day it was received, whatever the day of the request.
    decisive_date = function(q) return q.activity.received_date or q.date end,
    versions = {
        {
            -- Every bundled election falls long after these deadlines took their present
            -- form; 2004-03-12 (the 2004 revision of the Act) stands as the version's start.
            -- Check the Act's history before adding an election held before it.
            id = "resignation/53-60/2004-03-12",
            effective_from = "2004-03-12",
            promulgated = "2004-03-12",
            deadline = run_deadline,
            evaluate = evaluate,
            calendar = calendar,
            probe = {
                actor = {kind = "public_official"},
                activity = function(day)
                    return {kind = "run_for_office", seat = "constituency",
                            received_date = epcs.fmt(day)}
                end,
                -- 53(1)'s D-90, or 53(2)2's D-30 in a by- or vacancy election.
                inside = function(election)
                    return {verdict = "allowed",
                            article = election.kind == "general" and "53" or "53(2)"}
                end,
                outside = function(election)
                    return {verdict = "prohibited",
                            article = election.kind == "general" and "53" or "53(2)"}
                end,
            },
        },
    },
    tests = {
        {
            name = "r01: 53(2)3: an Assembly member running for local government head resigns by D-30",
            election = "local9", date = "2026-05-04", actor = {kind = "na_member"},
            activity = {kind = "run_for_office", local_race = "local_head", received_date = "2026-05-04"},
            expect = {verdict = "allowed", article = "53(2)", deadline = "2026-05-04"},
        },
        {
            name = "r02: 53(2)3: a day after D-30, the registration would be void (52(1)5)",
            election = "local9", date = "2026-05-05", actor = {kind = "na_member"},
            activity = {kind = "run_for_office", local_race = "local_head", received_date = "2026-05-05"},
            expect = {verdict = "prohibited", article = "53(2)", deadline = "2026-05-04"},
        },
        {
            name = "r03: 53(1) proviso: a council member runs for the head of their own local government in office",
            election = "local9", date = "2026-02-01", actor = {kind = "local_council_member"},
            activity = {kind = "run_for_office", local_race = "local_head", same_local_government = true},
            expect = {verdict = "allowed", article = "53", exception = "same_local_government"},
        },
        {
            name = "r04: 53(2)4: a council member running for another local government's council has D-30",
            election = "local9", date = "2026-05-04", actor = {kind = "local_council_member"},
            activity = {kind = "run_for_office", local_race = "council", same_local_government = false, seat = "constituency", received_date = "2026-05-04"},
            expect = {verdict = "allowed", article = "53(2)", deadline = "2026-05-04"},
        },
        {
            name = "r05: 53(5): a head running for an overlapping constituency resigns by D-120",
            election = "na22", date = "2023-12-12", actor = {kind = "local_government_head"},
            activity = {kind = "run_for_office", seat = "constituency", constituency_overlaps_jurisdiction = true, received_date = "2023-12-12"},
            expect = {verdict = "allowed", article = "53(5)", deadline = "2023-12-12"},
        },
        {
            name = "r06: 53(5): a day after D-120",
            election = "na22", date = "2023-12-13", actor = {kind = "local_government_head"},
            activity = {kind = "run_for_office", seat = "constituency", constituency_overlaps_jurisdiction = true, received_date = "2023-12-13"},
            expect = {verdict = "prohibited", article = "53(5)", deadline = "2023-12-12"},
        },
        {
            name = "r07: 53(1): a head is a public official; no overlap, D-90",
            election = "na22", date = "2024-01-11", actor = {kind = "local_government_head"},
            activity = {kind = "run_for_office", seat = "constituency", constituency_overlaps_jurisdiction = false, received_date = "2024-01-11"},
            expect = {verdict = "allowed", article = "53", deadline = "2024-01-11"},
        },
        {
            name = "r08: 53(5) or 53(1): whether the constituency overlaps the jurisdiction decides",
            election = "na22", date = "2023-12-01", actor = {kind = "local_government_head"},
            activity = {kind = "run_for_office", seat = "constituency", received_date = "2023-12-01"},
            expect = {verdict = "needs_facts", article = "53(5)", missing = {"activity.constituency_overlaps_jurisdiction"}, deadline = "2023-12-12"},
        },
        {
            name = "r09: 53(1): a council member is a public official running for the Assembly; D-90 missed",
            election = "na22", date = "2024-01-12", actor = {kind = "local_council_member"},
            activity = {kind = "run_for_office", seat = "constituency", received_date = "2024-01-12"},
            expect = {verdict = "prohibited", article = "53", deadline = "2024-01-11"},
        },
        {
            name = "r10: 53(1): a head running for President resigns by D-90",
            election = "pres20", date = "2021-12-09", actor = {kind = "local_government_head"},
            activity = {kind = "run_for_office", received_date = "2021-12-09"},
            expect = {verdict = "allowed", article = "53", deadline = "2021-12-09"},
        },
        {
            name = "r11: 53(2)2 with 35(4): a presidential vacancy election has D-30",
            election = "pres21", date = "2025-05-05", actor = {kind = "local_government_head"},
            activity = {kind = "run_for_office", received_date = "2025-05-05"},
            expect = {verdict = "prohibited", article = "53(2)", deadline = "2025-05-04"},
        },
        {
            name = "r12: 53(1) lists no voter; in a by-election the deadline shown is D-30 (53(2)2)",
            election = "ganghwa2024", date = "2024-08-01", actor = {kind = "voter"},
            activity = {kind = "run_for_office", seat = "constituency"},
            expect = {verdict = "allowed", article = "53(1)", exception = "actor_not_covered", deadline = "2024-09-16"},
        },
        {
            name = "r13: 53(1) proviso, 53(2)4: the office sought and whose local government decide",
            election = "local9", date = "2026-02-01", actor = {kind = "local_council_member"},
            activity = {kind = "run_for_office", received_date = "2026-02-01"},
            expect = {verdict = "needs_facts", article = "53", missing = {"activity.local_race", "activity.same_local_government"}},
        },
        {
            name = "r14: 53(1) proviso: a Seoul council member runs for Seoul mayor in office",
            election = "byel2021_seoul", date = "2021-02-01", actor = {kind = "local_council_member"},
            activity = {kind = "run_for_office", same_local_government = true},
            expect = {verdict = "allowed", article = "53", exception = "same_local_government"},
        },
        {
            name = "r15: 53(2)3: an Assembly member running for mayor resigns by D-30",
            election = "byel2021_busan", date = "2021-03-08", actor = {kind = "na_member"},
            activity = {kind = "run_for_office", received_date = "2021-03-08"},
            expect = {verdict = "allowed", article = "53(2)", deadline = "2021-03-08"},
        },
        {
            name = "r16: 53(1): an Assembly member running for a council seat has D-90 (53(2)3 names only the head)",
            election = "local9", date = "2026-03-05", actor = {kind = "na_member"},
            activity = {kind = "run_for_office", local_race = "council", seat = "constituency", received_date = "2026-03-05"},
            expect = {verdict = "allowed", article = "53", deadline = "2026-03-05"},
        },
        {
            name = "r17: 53(1): a head running for another local government's head has D-90 (53(2)4 names only council members)",
            election = "local9", date = "2026-03-06", actor = {kind = "local_government_head"},
            activity = {kind = "run_for_office", local_race = "local_head", same_local_government = false, received_date = "2026-03-06"},
            expect = {verdict = "prohibited", article = "53", deadline = "2026-03-05"},
        },
        {
            name = "r18: 53(2)1: proportional seats have D-30, for heads too",
            election = "na22", date = "2024-03-11", actor = {kind = "local_government_head"},
            activity = {kind = "run_for_office", seat = "proportional", received_date = "2024-03-11"},
            expect = {verdict = "allowed", article = "53(2)", deadline = "2024-03-11"},
        },
        {
            name = "r19: 60(2) sets no deadline for public officials; its own deadline is D-90 here",
            election = "ganghwa2024", date = "2024-07-01", actor = {kind = "public_official"},
            activity = {kind = "become_campaign_official", received_date = "2024-07-01"},
            expect = {verdict = "allowed", article = "60(2)", exception = "actor_not_covered", deadline = "2024-07-18"},
        },
        {
            name = "r20: 53(1) turns on the post held, which a prospective candidate's kind does not name",
            election = "na22", date = "2024-01-05", actor = {kind = "prospective_candidate"},
            activity = {kind = "run_for_office", seat = "constituency", received_date = "2024-01-05"},
            expect = {verdict = "needs_facts", article = "53", missing = {"actor.kind"}, deadline = "2024-01-11"},
        },
        {
            name = "r21: 53(1) does not list heads of tong, ri or ban (60(2) binds them only to campaign)",
            election = "local9", date = "2026-03-01", actor = {kind = "tong_ri_ban_head"},
            activity = {kind = "run_for_office", seat = "constituency"},
            expect = {verdict = "allowed", article = "53(1)", exception = "actor_not_covered", deadline = "2026-03-05"},
        },
        {
            name = "p18: deadline D-90 met on the day",
            election = "na22", date = "2024-01-11", actor = {kind = "public_official"},
            activity = {kind = "run_for_office", seat = "constituency", received_date = "2024-01-11"},
            expect = {verdict = "allowed", article = "53", deadline = "2024-01-11"},
        },
        {
            name = "p19: received after D-90",
            election = "na22", date = "2024-01-12", actor = {kind = "public_official"},
            activity = {kind = "run_for_office", seat = "constituency", received_date = "2024-01-12"},
            expect = {verdict = "prohibited", article = "53", deadline = "2024-01-11"},
        },
        {
            name = "p20: D-30 for proportional",
            election = "na22", date = "2024-03-11", actor = {kind = "journalist"},
            activity = {kind = "run_for_office", seat = "proportional", received_date = "2024-03-11"},
            expect = {verdict = "allowed", article = "53(2)", deadline = "2024-03-11"},
        },
        {
            name = "p21: a sitting member need not resign",
            election = "na22", date = "2024-02-01", actor = {kind = "na_member"},
            activity = {kind = "run_for_office", seat = "constituency"},
            expect = {verdict = "allowed", article = "53", exception = "sitting_na_member"},
        },
        {
            name = "p22: D-90 deadline missed to become a campaign official",
            election = "na22", date = "2024-01-12", actor = {kind = "tong_ri_ban_head"},
            activity = {kind = "become_campaign_official", received_date = "2024-01-12"},
            expect = {verdict = "prohibited", article = "60(2)", deadline = "2024-01-11",
                      penalty = PENALTY_60},
        },
        {
            name = "proportional resignation a day late",
            election = "na22", date = "2024-03-12", actor = {kind = "journalist"},
            activity = {kind = "run_for_office", seat = "proportional", received_date = "2024-03-12"},
            expect = {verdict = "prohibited", article = "53(2)"},
        },
        {
            name = "a general presidential election needs no seat: D-90",
            election = "pres20", date = "2021-12-09", actor = {kind = "public_official"},
            activity = {kind = "run_for_office", received_date = "2021-12-09"},
            expect = {verdict = "allowed", article = "53", deadline = "2021-12-09"},
        },
        {
            name = "a presidential vacancy election counts as a by-election: D-30",
            election = "pres21", date = "2025-05-04", actor = {kind = "public_official"},
            activity = {kind = "run_for_office", received_date = "2025-05-04"},
            expect = {verdict = "allowed", article = "53(2)", deadline = "2025-05-04"},
        },
        {
            name = "vacancy election, a day after D-30",
            election = "pres21", date = "2025-05-05", actor = {kind = "journalist"},
            activity = {kind = "run_for_office", received_date = "2025-05-05"},
            expect = {verdict = "prohibited", article = "53(2)"},
        },
        {
            name = "by-election: D-30 whatever the seat",
            election = "ganghwa2024", date = "2024-09-16", actor = {kind = "public_official"},
            activity = {kind = "run_for_office", seat = "constituency", received_date = "2024-09-16"},
            expect = {verdict = "allowed", article = "53(2)", deadline = "2024-09-16"},
        },
        {
            name = "the seat decides the deadline of a general election",
            election = "local9", date = "2026-01-01", actor = {kind = "public_official"},
            activity = {kind = "run_for_office", received_date = "2026-01-01"},
            expect = {verdict = "needs_facts", missing = {"activity.seat"}},
        },
        {
            name = "the received date decides",
            election = "local9", date = "2026-01-01", actor = {kind = "public_official"},
            activity = {kind = "run_for_office", seat = "constituency"},
            expect = {verdict = "needs_facts", article = "53", missing = {"activity.received_date"}},
        },
        {
            name = "a voter need not resign",
            election = "local9", date = "2026-01-01", actor = {kind = "voter"},
            activity = {kind = "run_for_office", seat = "constituency"},
            expect = {verdict = "allowed", article = "53(1)", exception = "actor_not_covered"},
        },
        {
            name = "a public official becoming a campaign official is not Art. 60(2)'s case",
            election = "local9", date = "2026-01-01", actor = {kind = "public_official"},
            activity = {kind = "become_campaign_official", received_date = "2026-01-01"},
            expect = {verdict = "allowed", article = "60(2)", exception = "actor_not_covered"},
        },
        {
            name = "Art. 60(2) met on D-90",
            election = "local9", date = "2026-03-05", actor = {kind = "reserve_force_commander"},
            activity = {kind = "become_campaign_official", received_date = "2026-03-05"},
            expect = {verdict = "allowed", article = "60(2)", deadline = "2026-03-05"},
        },
        {
            name = "vacancy election: Art. 60(2) runs to confirmation + 5 days",
            election = "pres21", date = "2025-04-09", actor = {kind = "residents_committee_member"},
            activity = {kind = "become_campaign_official", received_date = "2025-04-09"},
            expect = {verdict = "allowed", article = "60(2)", deadline = "2025-04-09"},
        },
        {
            name = "vacancy election: Art. 60(2) a day after confirmation + 5",
            election = "pres21", date = "2025-04-10", actor = {kind = "tong_ri_ban_head"},
            activity = {kind = "become_campaign_official", received_date = "2025-04-10"},
            expect = {verdict = "prohibited", article = "60(2)", deadline = "2025-04-09"},
        },
        {
            name = "who resigns must be known",
            election = "na22", date = "2024-01-01",
            activity = {kind = "run_for_office"},
            expect = {verdict = "needs_facts", missing = {"actor.kind"}},
        },
    },
}
