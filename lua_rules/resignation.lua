-- Arts. 53 and 60(2): who must resign, and by when, to run for office or to campaign.
--
-- Art. 53: public officials, full-time executives of government-invested organizations and
-- local public corporations, journalists and others must resign to run: by D-90 for a
-- constituency seat (and for a presidential election), by D-30 for proportional representation
-- and for by-elections and vacancy elections (a presidential vacancy election counts, Art.
-- 35(4)). A sitting National Assembly member running for the Assembly or the presidency need not
-- resign. Missing the deadline voids the registration (Art. 52(1)5).
-- Art. 60(2): reserve-force company commanders and above, residents' self-governance committee
-- members and heads of tong/ri/ban must resign by D-90 to become campaign officials or workers;
-- for a by-election, by 5 days after its cause was confirmed when that is later.
-- Both are judged on the day the head of the institution RECEIVED the resignation
-- (received_date); when it was accepted does not matter. Deadlines on a Sunday or holiday are
-- not moved.

local D, fmt = epcs.D, epcs.fmt

local constituency_deadline = epcs.deadline {last_day = D(90)}
local proportional_deadline = epcs.deadline {last_day = D(30)}
local official_deadline = epcs.deadline {last_day = D(90), after_cause_confirmed = 5}

local PENALTY_60 = "Art. 255(1): imprisonment of up to 3 years or a fine of up to KRW 6 million"

local MUST_RESIGN_TO_RUN = {
    public_official = {"a public official", "공무원"},
    journalist = {"a journalist", "언론인"},
    gov_invested_org_executive = {"a full-time executive of a government-invested organization",
                                  "정부투자기관의 상근 임원"},
    local_public_corp_executive = {"a full-time executive of a local public corporation",
                                   "지방공사·지방공단의 상근 임원"},
}

local MUST_RESIGN_TO_CAMPAIGN = {
    reserve_force_commander = {"a reserve-force company commander or higher",
                               "향토예비군 중대장 이상의 간부"},
    residents_committee_member = {"a residents' self-governance committee member",
                                  "주민자치위원회 위원"},
    tong_ri_ban_head = {"a head of a tong, ri or ban", "통·리·반의 장"},
}

local function needs(article, missing, reason, reason_ko, deadline)
    return epcs.needs_facts {article = article, missing = missing, reason = reason,
                             reason_ko = reason_ko, deadline = deadline}
end

local function not_covered(article, kind, deadline)
    return epcs.allowed {
        article = article,
        deadline = deadline,
        exception = "actor_not_covered",
        reason = string.format("Art. %s does not require actor kind '%s' to resign.", article, kind),
        reason_ko = string.format("%s는 이 행위자(%s)에게 사직을 요구하지 않습니다.",
            epcs.cite_ko(article), kind),
    }
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

local function run_for_office(q)
    local actor, election = q.actor, q.election
    if actor.kind == "na_member" and
        (election.office == "national_assembly" or election.office == "president") then
        return epcs.allowed {
            article = "53",
            deadline = constituency_deadline:day(election),
            exception = "sitting_na_member",
            reason = "A sitting National Assembly member running for the Assembly or the presidency need not resign (Art. 53(1)).",
            reason_ko = "국회의원이 국회의원선거나 대통령선거에 입후보하는 경우에는 사직하지 않아도 됩니다 (제53조제1항).",
        }
    end
    local who = MUST_RESIGN_TO_RUN[actor.kind]
    if not who then
        return not_covered("53", actor.kind, constituency_deadline:day(election))
    end
    local article, deadline
    if election.kind ~= "general" then
        article, deadline = "53(2)", proportional_deadline:day(election)
    elseif election.office == "president" then
        article, deadline = "53", constituency_deadline:day(election)
    elseif q.activity.seat == nil then
        return needs("53", {"activity.seat"},
            "A constituency seat must be resigned for by D-90, a proportional one by D-30.",
            "지역구는 선거일 전 90일, 비례대표는 선거일 전 30일까지 사직해야 하므로 선거구 구분을 알아야 합니다.",
            constituency_deadline:day(election))
    elseif q.activity.seat == "proportional" then
        article, deadline = "53(2)", proportional_deadline:day(election)
    else
        article, deadline = "53", constituency_deadline:day(election)
    end
    if q.activity.received_date == nil then
        return needs(article, {"activity.received_date"},
            "Art. 53 is judged on the day the head of the institution received the resignation.",
            "제53조는 소속기관의 장이 사직원을 접수한 날을 기준으로 판단합니다.", deadline)
    end
    return judge(q, article, deadline, who, nil,
        "the candidate registration would be void (Art. 52(1)5)",
        "후보자등록은 무효가 됩니다 (제52조제1항제5호).")
end

local function become_campaign_official(q)
    local election = q.election
    local deadline = official_deadline:day(election)
    local who = MUST_RESIGN_TO_CAMPAIGN[q.actor.kind]
    if not who then
        return not_covered("60(2)", q.actor.kind, deadline)
    end
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
            constituency_deadline:day(q.election))
    end
    if q.activity.kind == "become_campaign_official" then
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
    end
    add("60(2)", official_deadline, "Resignation deadline to become a campaign official (D-90)",
        "선거사무관계자가 되기 위한 사직 기한 (선거일 전 90일)")
    return items
end

return epcs.area {
    name = "resignation",
    article = "53",
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
            deadline = constituency_deadline,
            evaluate = evaluate,
            calendar = calendar,
            probe = {
                actor = {kind = "public_official"},
                activity = function(day)
                    return {kind = "run_for_office", seat = "constituency",
                            received_date = epcs.fmt(day)}
                end,
                inside = {verdict = "allowed", article = "53"},
                outside = {verdict = "prohibited", article = "53"},
                -- By-/vacancy elections have the D-30 deadline instead.
                when = function(election) return election.kind == "general" end,
            },
        },
    },
    tests = {
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
            expect = {verdict = "allowed", article = "53", exception = "actor_not_covered"},
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
