-- Reported online postings: false facts, slander and deepfakes (Arts. 82-4, 250, 251, 82-8; the
-- commission's joint response with 16 organizations of 2021-11-30).
--
-- A report says what a posting is (`category`); the verdict says whether the posting is
-- prohibited and, when it is, lists in `actions` what the commission sends whom:
--   * false_fact: false facts spread to get oneself or someone elected (Art. 250(1)), to keep
--     someone from being elected (250(2)), or either in a party primary (250(3));
--   * slander: stating facts in public to disparage a candidate (Art. 251), not punished when
--     the facts are true and in the public interest (its proviso; both must hold);
--   * deepfake: whatever lua_rules/deepfake.lua decides under Art. 82-8. It is asked through
--     epcs.decide, so its window, its effective date (2024-01-29) and its exceptions are that
--     file's alone and an amendment there applies here too.
--
-- Arts. 250 and 251 have no start: they bind whenever a posting aims at an election's outcome,
-- which it can until election day. Their verdicts carry election day as `deadline`; a posting
-- after it cannot aim at that election any more, so these articles no longer apply to it.
-- epcs knows no party's primary calendar: a posting about a primary is judged up to election
-- day as well, and the reporter says that it concerns a primary (`target`).
--
-- Whom the articles protect (`target`) decides, so it is asked for:
--   * Art. 250(1) and (2): a candidate or one who wants to be one ("후보자(후보자가 되고자 하는
--     자를 포함한다. 이하 이 조에서 같다)"), and his or her spouse, lineal ascendants and
--     descendants and siblings. 250(1) names among the facts about them "특정인 또는
--     특정단체로부터의 지지여부": a false claim that a party, or anyone, supports a candidate is
--     250(1). epcs reads such a claim made to defeat someone as a fact about that candidate under
--     250(2) too, since 250(2) covers any fact about him or her. A party, or anyone else, is
--     protected by neither otherwise (`support_for` says whose support the claim is about).
--   * Art. 250(3): the same acts "in connection with a party primary", read with "경선후보자"
--     (a primary contender, or one who wants to be) for "후보자"; 3 years or KRW 6 million for
--     250(1)'s acts, 5 years or KRW 10 million for 250(2)'s.
--   * Art. 251: candidates and their spouses, lineal ascendants and descendants and siblings, no
--     party. Its "후보자가 되고자 하는 자" (prospective candidates) is unconstitutional
--     (Constitutional Court, 2023Hun-Ba78, 2024-06-27), and as a criminal provision it lost
--     effect from the day after the court last upheld it (2011Hun-Ba75, 2013-06-27;
--     Constitutional Court Act Art. 47(3)): slandering a prospective candidate, or his or her
--     family, is not punished for acts from 2013-06-28. epcs applies the same to primary
--     contenders, who want to be their party's candidate (Supreme Court 2011Do168, 2011-03-10:
--     seeking a party's nomination shows the will to run). Art. 82-4(2), which the decision
--     left standing, still forbids slandering them online, with the same proviso: such a
--     posting gets a deletion request (82-4(3)) and no referral, as no crime is left to refer.
--
-- The deepfake tests below pin what deepfake.lua decides today about the window, the label and
-- the effective date. An amendment there that changes those fails them here too, by name:
-- update them with it, since reported deepfakes are judged by it as well.
--
-- Actions, as the commission's notice to platforms words them:
--   * deletion_request to the platform holding the posting (Art. 82-4(3), for information that
--     violates the Act), to be complied with "without delay" (82-4(4)); an objection is possible
--     within 3 days of receiving the request, after hiding the posting; an ignored request incurs
--     an administrative fine (Arts. 82-4(4), 261(6)4), ignoring it when requested twice or more
--     is a crime (Art. 256(3)1(e));
--   * referral of a posting whose act is a crime (Arts. 250, 251, 82-8(1)): an accusation
--     (고발) when the commission knows who posted it (`poster_identified`), else an
--     investigation request (수사의뢰), since an accusation names whom it accuses. Art. 82-8(2)'s
--     administrative fine is the commission's own to impose: no referral.
-- What is policy rather than statute in these (due times, who receives each referral) is in
-- POLICY below, dated and sourced; lua_rules/README.md tells staff how to change it.

local D, fmt = epcs.D, epcs.fmt

-- Arts. 250 and 251 bind up to election day (see above).
local last_day = epcs.deadline {last_day = D(0)}

-- Policy, not statute (epcs.policy, lua_rules/README.md "Policy parameters"): each entry is in
-- force for postings dated from its `from`; add an entry to change one, never edit a past one.
local POLICY = epcs.policy {
    -- Art. 82-4(4) says "without delay" (지체 없이) and sets no hours.
    deletion_due_hours = {
        {from = "2004-03-12", value = 24,
         source = "commission practice, set by staff: its reading of 'without delay' (Art. 82-4(4))"},
    },
    -- No statute sets a time for a referral's receipt.
    referral_due_hours = {
        {from = "2004-03-12", value = 24,
         source = "commission practice, set by staff: its own target for the investigators' receipt"},
    },
    -- The partner ids that receive each form of referral. The release of 2021-11-30 is the
    -- earliest document epcs has on it, and none says the practice differed before.
    accusation_to = {
        {from = "2004-03-12", value = "prosecutors",
         source = "NEC release 2021-11-30, joint response with 16 organizations: accusations to the prosecutors"},
    },
    investigation_request_to = {
        {from = "2004-03-12", value = "police",
         source = "NEC release 2021-11-30, joint response with 16 organizations: investigation requests to the police"},
    },
}

-- Statute, not policy. Objections within 3 days of receiving the request (Art. 82-4, as the
-- commission's notice to platforms cites it).
local OBJECTION_DAYS = 3
-- Art. 256(3)1(e) punishes ignoring the commission's request made "2회 이상" (twice or more):
-- the first ignored request is sent again, and the second ignored goes to the investigators.
local ESCALATE_AFTER = 2
local REFERRAL_NAMES = {prosecutors = {"the prosecutors", "검찰"}, police = {"the police", "경찰"}}

local PENALTY_OVERDUE = "Art. 261(6)4: administrative fine of up to KRW 3 million"
local PENALTY_IGNORED_TWICE =
    "Art. 256(3)1(e): imprisonment of up to 2 years or a fine of up to KRW 4 million"

local FALSE_FACT = {
    to_elect = {
        article = "250(1)",
        penalty = "Art. 250(1): imprisonment of up to 5 years or a fine of up to KRW 30 million",
        aim = "to get oneself or someone elected",
        aim_ko = "당선되거나 되게 할 목적으로",
    },
    to_defeat = {
        article = "250(2)",
        penalty = "Art. 250(2): imprisonment of up to 7 years or a fine of KRW 5 million to 30 million",
        aim = "to keep someone from being elected",
        aim_ko = "당선되지 못하게 할 목적으로",
    },
}
-- Art. 250(3): 250(1)'s and 250(2)'s acts in connection with a party primary.
local PRIMARY = {
    to_elect = {
        article = "250(3)",
        penalty = "Art. 250(3): imprisonment of up to 3 years or a fine of up to KRW 6 million (the acts of 250(1) in a party primary)",
        aim = "to win a party primary for oneself or someone",
        aim_ko = "당내경선에서 당선되거나 되게 할 목적으로",
    },
    to_defeat = {
        article = "250(3)",
        penalty = "Art. 250(3): imprisonment of up to 5 years or a fine of up to KRW 10 million (the acts of 250(2) in a party primary)",
        aim = "to keep someone from winning a party primary",
        aim_ko = "당내경선에서 당선되지 못하게 할 목적으로",
    },
}
local PENALTY_SLANDER = "Art. 251: imprisonment of up to 3 years or a fine of up to KRW 5 million"

-- Acts from this day on are not punished by Art. 251 when they slander a prospective candidate
-- (2023Hun-Ba78, retroactive to the day after 2011Hun-Ba75; see the top of the file).
local SLANDER_OF_PROSPECTIVE_UNPUNISHED_FROM = epcs.date("2013-06-28")

-- Whom a posting is about (`activity.target`) and what each article makes of it:
-- false_fact "person" (250(1), (2)), "primary" (250(3)) or "supporter" (only a claim about
-- their support for someone: `support_for` decides); slander "251", "82-4(2)" (not punished,
-- still forbidden online) or false (not protected).
local TARGETS = {
    candidate = {false_fact = "person", slander = "251", who = "a candidate", who_ko = "후보자"},
    candidate_family = {
        false_fact = "person", slander = "251",
        who = "a candidate's spouse, lineal ascendant or descendant, or sibling",
        who_ko = "후보자의 배우자, 직계존비속 또는 형제자매",
    },
    prospective_candidate = {
        false_fact = "person", slander = "82-4(2)",
        who = "a prospective candidate", who_ko = "후보자가 되려는 사람",
    },
    prospective_candidate_family = {
        false_fact = "person", slander = "82-4(2)",
        who = "a prospective candidate's spouse, lineal ascendant or descendant, or sibling",
        who_ko = "후보자가 되려는 사람의 배우자, 직계존비속 또는 형제자매",
    },
    primary_contender = {
        false_fact = "primary", slander = "82-4(2)",
        who = "a contender in a party primary", who_ko = "경선후보자",
    },
    primary_contender_family = {
        false_fact = "primary", slander = "82-4(2)",
        who = "a primary contender's spouse, lineal ascendant or descendant, or sibling",
        who_ko = "경선후보자의 배우자, 직계존비속 또는 형제자매",
    },
    party = {false_fact = "supporter", slander = false, who = "a party", who_ko = "정당"},
    other = {
        false_fact = "supporter", slander = false,
        who = "another person or group", who_ko = "그 밖의 사람이나 단체",
    },
}

-- Fresh tables for every verdict: nothing an evaluation returns is shared with the next.
local function deletion_request(day)
    return {
        kind = "deletion_request",
        to = "platform",
        article = "82-4(3)",
        due_hours = POLICY:value("deletion_due_hours", day),
        objection_days = OBJECTION_DAYS,
        overdue = {article = "261(6)4", penalty = PENALTY_OVERDUE},
        -- The platform is known: ignoring the commission twice is accused.
        escalation = {after = ESCALATE_AFTER, kind = "referral", form = "accusation",
                      to = POLICY:value("accusation_to", day), article = "256(3)1(e)",
                      penalty = PENALTY_IGNORED_TWICE},
    }
end

local function referral(day, identified, article, penalty)
    local form = identified and "accusation" or "investigation_request"
    return {kind = "referral", form = form, to = POLICY:value(form .. "_to", day),
            article = article, due_hours = POLICY:value("referral_due_hours", day), penalty = penalty}
end

-- What the commission does about a referral, in the reasons' words.
local function referral_words(action)
    local names = REFERRAL_NAMES[action.to] or {action.to, action.to}
    if action.form == "accusation" then
        return "files an accusation with " .. names[1], names[2] .. "에 고발합니다"
    end
    return "asks " .. names[1] .. " to investigate", names[2] .. "에 수사를 의뢰합니다"
end

-- Whom each article protects, in the reasons' words.
local PROTECTS = {
    ["250"] = {"candidates, prospective candidates and primary contenders and their spouses, lineal ascendants and descendants and siblings, and others only as to whom they are said to support",
               "후보자, 후보자가 되려는 사람, 경선후보자와 그 배우자, 직계존비속, 형제자매를 보호하고 그 밖의 사람이나 단체는 지지 여부에 관한 사실에 한하여 보호하며"},
    ["251"] = {"candidates and their spouses, lineal ascendants and descendants and siblings",
               "후보자와 그 배우자, 직계존비속, 형제자매를 보호하며"},
}

-- Arts. 250 and 251 protect persons: this target is not one of them.
local function not_protected(day, article, target)
    local protects = PROTECTS[article]
    return epcs.allowed {
        article = article,
        deadline = day,
        exception = "not_protected",
        reason = string.format(
            "Art. %s protects %s, not %s as this posting concerns it: the commission sends nothing under it.",
            article, protects[1], target.who),
        reason_ko = string.format(
            "%s는 %s, 이 게시물의 %s는 그 보호 대상이 아니므로 위원회는 아무것도 보내지 않습니다.",
            epcs.cite_ko(article), protects[2], target.who_ko),
    }
end

-- The facts a false_fact report lacks that decide it, or nil.
local function false_fact_missing(q)
    local target = TARGETS[q.activity.target]
    local missing = epcs.missing(q, "activity.intent", "activity.target")
    if target and target.false_fact == "supporter" and q.activity.support_for == nil then
        missing = missing or {}
        missing[#missing + 1] = "activity.support_for"
    end
    return missing
end

local function false_fact(q, day)
    local a = q.activity
    local target = TARGETS[a.target]
    if target and target.false_fact == "supporter" and a.support_for == "none" then
        return not_protected(day, "250", target)
    end
    local missing = false_fact_missing(q)
    if missing then
        return epcs.needs_facts {
            article = "250",
            deadline = day,
            missing = missing,
            reason = "The aim (to get someone elected, 250(1), or defeated, 250(2)) and whom the false facts are about decide the article and the penalty: Art. 250 protects candidates, prospective candidates and primary contenders and their families, and a party or anyone else only as to whom they support.",
            reason_ko = "당선 목적(제250조제1항)인지 낙선 목적(제250조제2항)인지, 허위사실이 누구에 관한 것인지에 따라 적용 조항과 처벌이 달라집니다. 제250조는 후보자, 후보자가 되려는 사람, 경선후보자와 그 가족을 보호하며 정당 등은 지지 여부에 관한 사실에 한합니다.",
        }
    end
    local kind = target.false_fact
    local about, about_ko = target.who, target.who_ko
    if kind == "supporter" then
        kind = a.support_for == "primary_contender" and "primary" or "person"
        about = "whether " .. target.who .. " supports " ..
            (kind == "primary" and "a primary contender" or "a candidate")
        about_ko = target.who_ko .. "의 " .. (kind == "primary" and "경선후보자" or "후보자") ..
            " 지지 여부"
    end
    local f = (kind == "primary" and PRIMARY or FALSE_FACT)[a.intent]
    local actions = {deletion_request(q.date), referral(q.date, a.poster_identified, f.article, f.penalty)}
    local refer, refer_ko = referral_words(actions[2])
    return epcs.prohibited {
        article = f.article,
        deadline = day,
        penalty = f.penalty,
        actions = actions,
        reason = string.format(
            "Spreading false facts about %s %s is prohibited up to election day %s (Art. %s): the commission asks the platform to delete the posting and %s.",
            about, f.aim, fmt(day), f.article, refer),
        reason_ko = string.format(
            "%s %s에 관한 허위의 사실을 공표하는 것은 선거일(%s)까지 금지되므로(%s) 위원회는 플랫폼에 게시물 삭제를 요청하고 %s.",
            f.aim_ko, about_ko, fmt(day), epcs.cite_ko(f.article), refer_ko),
    }
end

-- The article that answers slander of this target on this day: "251", "82-4(2)" or false.
local function slander_article(q, target)
    if target.slander == "82-4(2)" and q.date < SLANDER_OF_PROSPECTIVE_UNPUNISHED_FROM then
        return "251"
    end
    return target.slander
end

local function slander_prohibited(q, day, article, target, why, why_ko)
    if article == "82-4(2)" then
        return epcs.prohibited {
            article = "82-4(2)",
            deadline = day,
            actions = {deletion_request(q.date)},
            reason = string.format(
                "Slandering %s online is forbidden by Art. 82-4(2) unless the facts are true and in the public interest, and here %s: the commission asks the platform to delete the posting, and refers nothing, since Art. 251 no longer punishes it (Constitutional Court, 2023Hun-Ba78, 2024-06-27).",
                target.who, why),
            reason_ko = string.format(
                "정보통신망을 이용하여 %s을(를) 비방하는 것은 진실한 사실로서 공공의 이익에 관한 때가 아니면 제82조의4제2항에 따라 금지되는데, 이 게시물은 %s. 위원회는 플랫폼에 게시물 삭제를 요청하며, 제251조로는 처벌되지 않으므로(헌법재판소 2024. 6. 27. 2023헌바78) 고발하지 않습니다.",
                target.who_ko, why_ko),
        }
    end
    local actions = {deletion_request(q.date), referral(q.date, q.activity.poster_identified, "251", PENALTY_SLANDER)}
    local refer, refer_ko = referral_words(actions[2])
    return epcs.prohibited {
        article = "251",
        deadline = day,
        penalty = PENALTY_SLANDER,
        actions = actions,
        reason = string.format(
            "Slandering %s is prohibited up to election day %s unless the facts are true and in the public interest (Art. 251), and here %s: the commission asks the platform to delete the posting and %s.",
            target.who, fmt(day), why, refer),
        reason_ko = string.format(
            "%s을(를) 비방하는 것은 선거일(%s)까지 금지되며 진실한 사실로서 공공의 이익에 관한 때에만 처벌하지 않는데(제251조), 이 게시물은 %s. 위원회는 플랫폼에 게시물 삭제를 요청하고 %s.",
            target.who_ko, fmt(day), why_ko, refer_ko),
    }
end

local function slander(q, day)
    local a = q.activity
    local target = TARGETS[a.target]
    if target and not target.slander then
        return not_protected(day, "251", target)
    end
    -- The proviso needs both true facts and the public interest: one of them known to be
    -- missing settles the case whatever the other is.
    local settled = a.true_facts == false or a.public_interest == false
    local missing = epcs.missing(q, "activity.target")
    if not settled then
        for _, path in ipairs(epcs.missing(q, "activity.true_facts", "activity.public_interest") or {}) do
            missing = missing or {}
            missing[#missing + 1] = path
        end
    end
    if missing then
        return epcs.needs_facts {
            article = "251",
            deadline = day,
            missing = missing,
            reason = "Whom the posting slanders decides whether Art. 251 protects them, and slander is not punished when its facts are true and in the public interest: all of these must be known.",
            reason_ko = "비방 대상이 누구인지에 따라 제251조의 보호 여부가 정해지고, 진실한 사실로서 공공의 이익에 관한 것인지 알아야 단서를 적용할 수 있습니다.",
        }
    end
    local article = slander_article(q, target)
    if settled then
        local why, why_ko = "the facts are not true", "사실이 진실하지 않습니다"
        if a.true_facts ~= false then
            why, why_ko = "the posting is not in the public interest", "공공의 이익에 관한 것이 아닙니다"
        end
        return slander_prohibited(q, day, article, target, why, why_ko)
    end
    return epcs.allowed {
        article = article,
        deadline = day,
        exception = "true_and_public_interest",
        reason = string.format(
            "Art. %s does not forbid stating true facts in the public interest, as this posting does.",
            article),
        reason_ko = string.format(
            "진실한 사실로서 공공의 이익에 관한 때에는 %s가 적용되지 않습니다.", epcs.cite_ko(article)),
    }
end

local function after_election_day(q, day)
    local article = q.activity.category == "false_fact" and "250" or "251"
    return epcs.allowed {
        article = article,
        deadline = day,
        exception = "after_election_day",
        reason = string.format(
            "After election day %s a posting can no longer aim at this election's outcome, which Art. %s requires.",
            fmt(day), article),
        reason_ko = string.format(
            "선거일(%s) 후의 게시물은 이 선거의 당선이나 낙선을 목적으로 할 수 없으므로 %s가 적용되지 않습니다.",
            fmt(day), epcs.cite_ko(article)),
    }
end

-- Verdicts of the deepfake area that are crimes, and so get a referral besides the deletion
-- request.
local DEEPFAKE_CRIMES = {["82-8(1)"] = true}

-- The deepfake area's verdict, with what the commission sends when it prohibits.
local function deepfake(q)
    local verdict = epcs.decide("deepfake", q)
    if verdict.verdict == "prohibited" then
        local actions = {deletion_request(q.date)}
        if DEEPFAKE_CRIMES[verdict.article] then
            actions[2] = referral(q.date, q.activity.poster_identified, verdict.article,
                                  verdict.penalty)
        end
        verdict.actions = actions
    end
    return verdict
end

local function evaluate(q, version)
    local category = q.activity.category
    if category == nil then
        return epcs.needs_facts {
            article = "82-4",
            missing = {"activity.category"},
            reason = "Whether the posting spreads false facts, slanders or is a deepfake decides the article (Arts. 250, 251, 82-8).",
            reason_ko = "게시물이 허위사실 공표, 비방, 딥페이크 중 무엇인지 알아야 적용 조항(제250조, 제251조, 제82조의8)을 정할 수 있습니다.",
        }
    end
    if category == "deepfake" then
        return deepfake(q)
    end
    local day = last_day:day(q.election)
    if q.date > day then
        return after_election_day(q, day)
    end
    if category == "false_fact" then
        return false_fact(q, day)
    end
    return slander(q, day)
end

-- The last day of Arts. 250 and 251, and the deepfake area's own windows, listed under this
-- area because its deepfake verdicts follow them.
local function calendar(election, version)
    local items = {{
        article = "82-4(2)", rule = version.id, day = last_day:day(election),
        title = "Last day online false facts or slander about candidates can aim at this election (Arts. 250, 251)",
        title_ko = "정보통신망을 이용한 후보자 관련 허위사실 공표·비방이 이 선거를 목적으로 할 수 있는 마지막 날 (제250조, 제251조)",
    }}
    for _, item in ipairs(epcs.calendar_of("deepfake", election)) do
        items[#items + 1] = {
            article = item.article, rule = version.id, from = item.from, to = item.to,
            day = item.day, title = "Reported deepfakes: " .. item.title,
            title_ko = item.title_ko and "딥페이크 신고: " .. item.title_ko,
        }
    end
    return items
end

local PENALTY_250_1, PENALTY_250_2 = FALSE_FACT.to_elect.penalty, FALSE_FACT.to_defeat.penalty
local PENALTY_250_3_ELECT, PENALTY_250_3_DEFEAT = PRIMARY.to_elect.penalty, PRIMARY.to_defeat.penalty
-- The deepfake area's texts, repeated here only to pin what its verdicts say through this area.
local PENALTY_82_8_1 =
    "Art. 255(5): imprisonment of up to 7 years or a fine of KRW 10 million to 50 million"
local PENALTY_82_8_2 = "Art. 261(3)4: administrative fine of up to KRW 10 million"
local LABEL = "Label the video as AI-made (Art. 82-8(2))."
local NA22_DEADLINE = "2024-04-10"
-- The day most tests are dated, for the actions the policy in force then gives.
local MARCH = epcs.date("2024-03-01")

return epcs.area {
    name = "false_information",
    article = "82-4",
    -- Arts. 250 and 251 bind anyone who spreads false facts or slanders ("...한 자").
    coverage = epcs.coverage {{everyone = "250"}},
    title = "Reported false facts, slander and deepfakes: deletion requests and referrals",
    title_ko = "허위사실·비방·딥페이크 게시물 신고: 삭제 요청 및 고발",
    versions = {
        {
            -- Every bundled election falls long after Arts. 82-4, 250 and 251 and the sanctions
            -- of ignored deletion requests took their present form; 2004-03-12 (the 2004
            -- revision of the Act) stands as the version's start. Check the Act's history
            -- before adding an election held before it.
            id = "false_information/82-4/2004-03-12",
            effective_from = "2004-03-12",
            promulgated = "2004-03-12",
            deadline = last_day,
            evaluate = evaluate,
            calendar = calendar,
            probe = {
                -- Art. 250(2) up to election day, then no aim at the election is possible.
                activity = {kind = "posting", category = "false_fact", intent = "to_defeat",
                            target = "candidate"},
                inside = {verdict = "prohibited", article = "250(2)"},
                outside = {verdict = "allowed", article = "250", exception = "after_election_day"},
            },
        },
    },
    tests = {
        {
            name = "f01: false facts to get someone elected",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_elect", target = "candidate"},
            expect = {verdict = "prohibited", article = "250(1)", deadline = "2024-04-10",
                      penalty = PENALTY_250_1,
                      -- Spelled out once, so a change to what the commission sends shows here.
                      actions = {
                          {kind = "deletion_request", to = "platform", article = "82-4(3)",
                           due_hours = 24, objection_days = 3,
                           overdue = {article = "261(6)4",
                                      penalty = "Art. 261(6)4: administrative fine of up to KRW 3 million"},
                           escalation = {after = 2, kind = "referral", form = "accusation",
                                         to = "prosecutors", article = "256(3)1(e)",
                                         penalty = "Art. 256(3)1(e): imprisonment of up to 2 years or a fine of up to KRW 4 million"}},
                          {kind = "referral", form = "investigation_request", to = "police",
                           article = "250(1)", due_hours = 24, penalty = PENALTY_250_1},
                      }},
        },
        {
            name = "f02: false facts to defeat a prospective candidate, poster identified",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "prospective_candidate", poster_identified = true},
            expect = {verdict = "prohibited", article = "250(2)", deadline = "2024-04-10",
                      penalty = PENALTY_250_2,
                      actions = {deletion_request(MARCH), referral(MARCH, true, "250(2)", PENALTY_250_2)}},
        },
        {
            name = "f03: false facts long before D-90 are still prohibited",
            election = "local9", date = "2025-09-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "candidate"},
            expect = {verdict = "prohibited", article = "250(2)", deadline = "2026-06-03"},
        },
        {
            name = "f04: false facts on election day",
            election = "na22", date = "2024-04-10", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_elect", target = "candidate"},
            expect = {verdict = "prohibited", article = "250(1)"},
        },
        {
            name = "f05: after election day a posting cannot aim at the election",
            election = "na22", date = "2024-04-11", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_elect"},
            expect = {verdict = "allowed", article = "250", exception = "after_election_day", deadline = "2024-04-10"},
        },
        {
            name = "f06: false facts without the aim or the target",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact"},
            expect = {verdict = "needs_facts", article = "250", deadline = "2024-04-10", missing = {"activity.intent", "activity.target"}},
        },
        {
            name = "f07: true slander in the public interest is not punished",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "candidate", true_facts = true, public_interest = true},
            expect = {verdict = "allowed", article = "251", exception = "true_and_public_interest", deadline = "2024-04-10"},
        },
        {
            name = "f08: slander of a candidate with untrue facts",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "candidate", true_facts = false, public_interest = true},
            expect = {verdict = "prohibited", article = "251", deadline = "2024-04-10",
                      penalty = PENALTY_SLANDER,
                      actions = {deletion_request(MARCH), referral(MARCH, nil, "251", PENALTY_SLANDER)}},
        },
        {
            name = "f09: true slander not in the public interest",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "candidate", true_facts = true, public_interest = false},
            expect = {verdict = "prohibited", article = "251",
                      actions = {deletion_request(MARCH), referral(MARCH, nil, "251", PENALTY_SLANDER)}},
        },
        {
            name = "f10: untrue facts settle it whatever the public interest",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "candidate", true_facts = false},
            expect = {verdict = "prohibited", article = "251"},
        },
        {
            name = "f11: no public interest settles it whatever the truth",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "candidate", public_interest = false},
            expect = {verdict = "prohibited", article = "251"},
        },
        {
            name = "f12: true slander, public interest unknown",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "candidate", true_facts = true},
            expect = {verdict = "needs_facts", article = "251", missing = {"activity.public_interest"}},
        },
        {
            name = "f13: slander in the public interest, truth unknown",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "candidate", public_interest = true},
            expect = {verdict = "needs_facts", article = "251", missing = {"activity.true_facts"}},
        },
        {
            name = "f14: slander of a candidate with neither fact",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "candidate"},
            expect = {verdict = "needs_facts", article = "251", missing = {"activity.true_facts", "activity.public_interest"}},
        },
        {
            name = "f15: slander after election day",
            election = "local9", date = "2026-06-04", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", true_facts = false},
            expect = {verdict = "allowed", article = "251", exception = "after_election_day"},
        },
        {
            name = "f16: without a category nothing can be said",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting"},
            expect = {verdict = "needs_facts", article = "82-4", deadline = "2024-04-10", missing = {"activity.category"}},
        },
        {
            name = "f17: campaign deepfake inside the window: deletion and referral",
            election = "na22", date = "2024-02-15", actor = {kind = "voter"},
            activity = {kind = "posting", category = "deepfake", deepfake = true, purpose = "campaign", labeled = true},
            expect = {verdict = "prohibited", article = "82-8(1)", window = {from = "2024-01-11", to = "2024-04-10"},
                      penalty = PENALTY_82_8_1,
                      actions = {deletion_request(epcs.date("2024-02-15")),
                                 referral(epcs.date("2024-02-15"), nil, "82-8(1)", PENALTY_82_8_1)}},
        },
        {
            name = "f18: the deepfake area's first day in force",
            election = "na22", date = "2024-01-29", actor = {kind = "voter"},
            activity = {kind = "posting", category = "deepfake", deepfake = true, purpose = "campaign"},
            expect = {verdict = "prohibited", article = "82-8(1)"},
        },
        {
            name = "f19: before 2024-01-29 Art. 82-8 is not in force, even inside the window",
            election = "na22", date = "2024-01-28", actor = {kind = "voter"},
            activity = {kind = "posting", category = "deepfake", deepfake = true, purpose = "campaign", labeled = false},
            expect = {verdict = "allowed", article = "82-8", exception = "not_in_force", rule = "false_information/82-4/2004-03-12"},
        },
        {
            name = "f20: labeled campaign deepfake outside the window",
            election = "local9", date = "2026-03-04", actor = {kind = "voter"},
            activity = {kind = "posting", category = "deepfake", deepfake = true, purpose = "campaign", labeled = true},
            expect = {verdict = "allowed", article = "82-8(2)", exception = "labeled_outside_window", window = {from = "2026-03-05", to = "2026-06-03"},
                      obligations = {LABEL}},
        },
        {
            name = "f21: unlabeled campaign deepfake outside the window: deletion, no referral",
            election = "local9", date = "2026-01-05", actor = {kind = "voter"},
            activity = {kind = "posting", category = "deepfake", deepfake = true, purpose = "campaign", labeled = false},
            expect = {verdict = "prohibited", article = "82-8(2)",
                      penalty = PENALTY_82_8_2, obligations = {LABEL},
                      actions = {deletion_request(epcs.date("2026-01-05"))}},
        },
        {
            name = "f22: deepfake outside the window, label unknown",
            election = "local9", date = "2026-01-05", actor = {kind = "voter"},
            activity = {kind = "posting", category = "deepfake", deepfake = true, purpose = "campaign"},
            expect = {verdict = "needs_facts", article = "82-8(2)", missing = {"activity.labeled"}},
        },
        {
            name = "f23: deepfake without the deepfake area's facts",
            election = "na22", date = "2024-02-15", actor = {kind = "voter"},
            activity = {kind = "posting", category = "deepfake"},
            expect = {verdict = "needs_facts", article = "82-8", missing = {"activity.deepfake", "activity.purpose"}},
        },
        {
            name = "f24: vacancy election: the deepfake window opens on confirmation",
            election = "pres21", date = "2025-04-04", actor = {kind = "voter"},
            activity = {kind = "posting", category = "deepfake", deepfake = true, purpose = "campaign", labeled = true},
            expect = {verdict = "prohibited", article = "82-8(1)", window = {from = "2025-04-04", to = "2025-06-03"}},
        },
        {
            name = "f25: false facts before 82-8 existed are judged as ever",
            election = "pres20", date = "2022-02-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "candidate"},
            expect = {verdict = "prohibited", article = "250(2)", deadline = "2022-03-09",
                      actions = {deletion_request(epcs.date("2022-02-01")),
                                 referral(epcs.date("2022-02-01"), nil, "250(2)", PENALTY_250_2)}},
        },
        {
            name = "f26: slander of a party: Art. 251 protects persons, not parties",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "party", true_facts = false, public_interest = false},
            expect = {verdict = "allowed", article = "251", exception = "not_protected", deadline = "2024-04-10"},
        },
        {
            name = "f27: false facts about a party that are not about its support for anyone",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "party", support_for = "none"},
            expect = {verdict = "allowed", article = "250", exception = "not_protected", deadline = "2024-04-10"},
        },
        {
            name = "f28: a false claim of a party's support for a candidate",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_elect", target = "party", support_for = "candidate"},
            expect = {verdict = "prohibited", article = "250(1)", deadline = "2024-04-10",
                      penalty = PENALTY_250_1},
        },
        {
            name = "f29: false facts about a party: whose support they concern is asked",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_elect", target = "party"},
            expect = {verdict = "needs_facts", article = "250", deadline = "2024-04-10", missing = {"activity.support_for"}},
        },
        {
            name = "f30: a false claim about a party's support made to defeat a candidate",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "party", support_for = "candidate"},
            expect = {verdict = "prohibited", article = "250(2)",
                      penalty = PENALTY_250_2},
        },
        {
            name = "f31: false facts about a candidate's spouse",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "candidate_family"},
            expect = {verdict = "prohibited", article = "250(2)", deadline = "2024-04-10"},
        },
        {
            name = "f32: slander of a candidate's sibling",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "candidate_family", true_facts = false},
            expect = {verdict = "prohibited", article = "251",
                      penalty = PENALTY_SLANDER},
        },
        {
            name = "f33: slander of a prospective candidate: deletion only, no referral",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "prospective_candidate", true_facts = false},
            expect = {verdict = "prohibited", article = "82-4(2)", deadline = "2024-04-10",
                      actions = {deletion_request(MARCH)}},
        },
        {
            name = "f34: true slander of a prospective candidate in the public interest",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "prospective_candidate", true_facts = true, public_interest = true},
            expect = {verdict = "allowed", article = "82-4(2)", exception = "true_and_public_interest"},
        },
        {
            name = "f35: slander of a prospective candidate's family",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "prospective_candidate_family", public_interest = false},
            expect = {verdict = "prohibited", article = "82-4(2)",
                      actions = {deletion_request(MARCH)}},
        },
        {
            name = "f36: false facts in a party primary to win it",
            election = "local9", date = "2026-04-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_elect", target = "primary_contender"},
            expect = {verdict = "prohibited", article = "250(3)", deadline = "2026-06-03",
                      penalty = PENALTY_250_3_ELECT,
                      actions = {deletion_request(epcs.date("2026-04-01")),
                                 referral(epcs.date("2026-04-01"), nil, "250(3)", PENALTY_250_3_ELECT)}},
        },
        {
            name = "f37: false facts about a primary contender's spouse to defeat him",
            election = "local9", date = "2026-04-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "primary_contender_family", poster_identified = true},
            expect = {verdict = "prohibited", article = "250(3)",
                      penalty = PENALTY_250_3_DEFEAT},
        },
        {
            name = "f38: a false claim that someone supports a primary contender",
            election = "local9", date = "2026-04-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_elect", target = "other", support_for = "primary_contender"},
            expect = {verdict = "prohibited", article = "250(3)",
                      penalty = PENALTY_250_3_ELECT},
        },
        {
            name = "f39: slander of a primary contender: deletion only",
            election = "local9", date = "2026-04-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "primary_contender", true_facts = false},
            expect = {verdict = "prohibited", article = "82-4(2)",
                      actions = {deletion_request(epcs.date("2026-04-01"))}},
        },
        {
            name = "f40: false facts about someone else, not about support",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "other", support_for = "none"},
            expect = {verdict = "allowed", article = "250", exception = "not_protected"},
        },
        {
            name = "f41: slander, whom unknown, untrue facts",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", true_facts = false},
            expect = {verdict = "needs_facts", article = "251", missing = {"activity.target"}},
        },
        {
            name = "f42: slander with nothing known",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander"},
            expect = {verdict = "needs_facts", article = "251", missing = {"activity.target", "activity.true_facts", "activity.public_interest"}},
        },
        {
            name = "f43: false facts with the aim, target unknown",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat"},
            expect = {verdict = "needs_facts", article = "250", missing = {"activity.target"}},
        },
        {
            name = "f44: an identified poster is accused before the prosecutors",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "candidate", poster_identified = true},
            expect = {verdict = "prohibited", article = "250(2)",
                      actions = {deletion_request(MARCH),
                                 {kind = "referral", form = "accusation", to = "prosecutors",
                                  article = "250(2)", due_hours = 24, penalty = PENALTY_250_2}}},
        },
        {
            name = "f45: an unidentified poster: investigation request to the police",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "candidate", poster_identified = false},
            expect = {verdict = "prohibited", article = "250(2)",
                      actions = {deletion_request(MARCH),
                                 {kind = "referral", form = "investigation_request", to = "police",
                                  article = "250(2)", due_hours = 24, penalty = PENALTY_250_2}}},
        },
        {
            name = "f46: a deepfake by an identified poster is accused",
            election = "na22", date = "2024-04-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "deepfake", deepfake = true, purpose = "campaign", labeled = true, poster_identified = true},
            expect = {verdict = "prohibited", article = "82-8(1)",
                      actions = {deletion_request(epcs.date("2024-04-01")),
                                 referral(epcs.date("2024-04-01"), true, "82-8(1)", PENALTY_82_8_1)}},
        },
        {
            name = "f47: boundary: Art. 250(3) on election day",
            election = "local9", date = "2026-06-03", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "primary_contender"},
            expect = {verdict = "prohibited", article = "250(3)", deadline = "2026-06-03"},
        },
        {
            name = "f48: boundary: Art. 250(3) the day after election day",
            election = "local9", date = "2026-06-04", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat", target = "primary_contender"},
            expect = {verdict = "allowed", article = "250", exception = "after_election_day", deadline = "2026-06-03"},
        },
        {
            name = "f49: boundary: Art. 82-4(2) on election day",
            election = "na22", date = "2024-04-10", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "prospective_candidate", true_facts = false},
            expect = {verdict = "prohibited", article = "82-4(2)", deadline = "2024-04-10"},
        },
        {
            name = "f50: boundary: Art. 82-4(2) the day after election day",
            election = "na22", date = "2024-04-11", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "prospective_candidate", true_facts = false},
            expect = {verdict = "allowed", article = "251", exception = "after_election_day", deadline = "2024-04-10"},
        },
        {
            name = "f51: boundary: slander of a prospective candidate the day 2011Hun-Ba75 upheld Art. 251",
            election = "byel2021_busan", date = "2013-06-27", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "prospective_candidate", true_facts = false},
            expect = {verdict = "prohibited", article = "251",
                      penalty = PENALTY_SLANDER},
        },
        {
            name = "f52: boundary: slander of a prospective candidate the day after, from which 2023Hun-Ba78 applies",
            election = "byel2021_busan", date = "2013-06-28", actor = {kind = "voter"},
            activity = {kind = "posting", category = "slander", target = "prospective_candidate", true_facts = false},
            expect = {verdict = "prohibited", article = "82-4(2)",
                      actions = {deletion_request(epcs.date("2013-06-28"))}},
        },
    },
}
