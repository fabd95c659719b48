-- Reported online postings: false facts, slander and deepfakes (Arts. 82-4, 250, 251, 82-8; the
-- commission's joint response with 16 organizations of 2021-11-30).
--
-- A report says what a posting is (`category`); the verdict says whether the posting is
-- prohibited and, when it is, lists in `actions` what the commission sends whom:
--   * false_fact: false facts spread to get oneself or someone elected (Art. 250(1)) or to keep
--     someone from being elected (250(2));
--   * slander: stating facts in public to disparage a candidate (Art. 251), not punished when
--     the facts are true and in the public interest (its proviso; both must hold);
--   * deepfake: whatever lua_rules/deepfake.lua decides under Art. 82-8. It is asked through
--     epcs.decide, so its window, its effective date (2024-01-29) and its exceptions are that
--     file's alone and an amendment there applies here too.
--
-- Arts. 250 and 251 have no start: they bind whenever a posting aims at an election's outcome,
-- which it can until election day. Their verdicts carry election day as `deadline`; a posting
-- after it cannot aim at that election any more, so these articles no longer apply to it.
--
-- `target` (whom the posting is about) is recorded but decides nothing: Arts. 250 and 251
-- protect (prospective) candidates and their spouses, lineal ascendants and descendants and
-- siblings, whom `other` may name, and a false claim of a party's support for a candidate falls
-- under 250(1). Whether the person is covered is for the commission to judge on the report.
--
-- The deepfake tests below pin what deepfake.lua decides today about the window, the label and
-- the effective date. An amendment there that changes those fails them here too, by name:
-- update them with it, since reported deepfakes are judged by it as well.
--
-- Actions, as the commission's notice to platforms words them:
--   * deletion_request to the platform holding the posting (Art. 82-4(3), for information that
--     violates the Act), to be complied with "without delay" (82-4(4)); an objection is possible
--     within 3 days of receiving the request, after hiding the posting; an ignored request incurs
--     an administrative fine (Art. 261(6)4), ignoring two or more is a crime (Art. 256(3)1(e));
--   * referral to the prosecutors of a posting whose act is a crime (Arts. 250, 251, 82-8(1)).
--     Art. 82-8(2)'s administrative fine is the commission's own to impose: no referral.

local D, fmt = epcs.D, epcs.fmt

-- Arts. 250 and 251 bind up to election day (see above).
local last_day = epcs.deadline {last_day = D(0)}

-- "Without delay" (Art. 82-4(4)) as the commission reads it in operation: 24 hours.
local DELETION_DUE_HOURS = 24
local OBJECTION_DAYS = 3
-- An ignored deletion request is sent again; the second one ignored goes to the prosecutors.
local ESCALATE_AFTER = 2
-- No statute sets a time for a referral; the commission's own target for its receipt.
local REFERRAL_DUE_HOURS = 24
local REFERRAL_TO = "prosecutors"
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
local PENALTY_SLANDER = "Art. 251: imprisonment of up to 3 years or a fine of up to KRW 5 million"

-- Verdicts of the deepfake area that are crimes, and so get a referral besides the deletion
-- request.
local DEEPFAKE_CRIMES = {["82-8(1)"] = true}

-- Fresh tables for every verdict: nothing an evaluation returns is shared with the next.
local function deletion_request()
    return {
        kind = "deletion_request",
        to = "platform",
        article = "82-4(3)",
        due_hours = DELETION_DUE_HOURS,
        objection_days = OBJECTION_DAYS,
        overdue = {article = "261(6)4", penalty = PENALTY_OVERDUE},
        escalation = {after = ESCALATE_AFTER, kind = "referral", to = "prosecutors",
                      article = "256(3)1(e)", penalty = PENALTY_IGNORED_TWICE},
    }
end

local function referral(article, penalty)
    return {kind = "referral", to = REFERRAL_TO, article = article,
            due_hours = REFERRAL_DUE_HOURS, penalty = penalty}
end

local function false_fact(q, day)
    local intent = q.activity.intent
    if intent == nil then
        return epcs.needs_facts {
            article = "250",
            deadline = day,
            missing = {"activity.intent"},
            reason = "Whether the false facts aim to get someone elected (Art. 250(1)) or to defeat someone (250(2)) decides the article and the penalty.",
            reason_ko = "당선 목적(제250조제1항)인지 낙선 목적(제250조제2항)인지에 따라 적용 조항과 처벌이 달라집니다.",
        }
    end
    local f = FALSE_FACT[intent]
    local to = REFERRAL_NAMES[REFERRAL_TO]
    return epcs.prohibited {
        article = f.article,
        deadline = day,
        penalty = f.penalty,
        actions = {deletion_request(), referral(f.article, f.penalty)},
        reason = string.format(
            "Spreading false facts %s is prohibited up to election day %s (Art. %s): the commission asks the platform to delete the posting and refers it to %s.",
            f.aim, fmt(day), f.article, to[1]),
        reason_ko = string.format(
            "%s 허위의 사실을 공표하는 것은 선거일(%s)까지 금지되므로(%s) 위원회는 플랫폼에 게시물 삭제를 요청하고 %s에 고발합니다.",
            f.aim_ko, fmt(day), epcs.cite_ko(f.article), to[2]),
    }
end

local function slander(q, day)
    local a = q.activity
    -- The proviso needs both true facts and the public interest: one of them known to be
    -- missing settles the case whatever the other is.
    if a.true_facts == false or a.public_interest == false then
        local why, why_ko = "the facts are not true", "사실이 진실하지 않습니다"
        if a.true_facts ~= false then
            why, why_ko = "the posting is not in the public interest", "공공의 이익에 관한 것이 아닙니다"
        end
        local to = REFERRAL_NAMES[REFERRAL_TO]
        return epcs.prohibited {
            article = "251",
            deadline = day,
            penalty = PENALTY_SLANDER,
            actions = {deletion_request(), referral("251", PENALTY_SLANDER)},
            reason = string.format(
                "Slandering a candidate is prohibited up to election day %s unless the facts are true and in the public interest (Art. 251), and here %s: the commission asks the platform to delete the posting and refers it to %s.",
                fmt(day), why, to[1]),
            reason_ko = string.format(
                "후보자 등을 비방하는 것은 선거일(%s)까지 금지되며 진실한 사실로서 공공의 이익에 관한 때에만 처벌하지 않는데(제251조), 이 게시물은 %s. 위원회는 플랫폼에 게시물 삭제를 요청하고 %s에 고발합니다.",
                fmt(day), why_ko, to[2]),
        }
    end
    local missing = epcs.missing(q, "activity.true_facts", "activity.public_interest")
    if missing then
        return epcs.needs_facts {
            article = "251",
            deadline = day,
            missing = missing,
            reason = "Slander is not punished when its facts are true and in the public interest (Art. 251): both must be known.",
            reason_ko = "진실한 사실이며 공공의 이익에 관한 것인지 알아야 제251조 단서를 적용할 수 있습니다.",
        }
    end
    return epcs.allowed {
        article = "251",
        deadline = day,
        exception = "true_and_public_interest",
        reason = "Art. 251 does not punish stating true facts in the public interest, as this posting does.",
        reason_ko = "진실한 사실로서 공공의 이익에 관한 때에는 제251조에 따라 처벌하지 않습니다.",
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

-- The deepfake area's verdict, with what the commission sends when it prohibits.
local function deepfake(q)
    local verdict = epcs.decide("deepfake", q)
    if verdict.verdict == "prohibited" then
        local actions = {deletion_request()}
        if DEEPFAKE_CRIMES[verdict.article] then
            actions[2] = referral(verdict.article, verdict.penalty)
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
-- The deepfake area's texts, repeated here only to pin what its verdicts say through this area.
local PENALTY_82_8_1 =
    "Art. 255(5): imprisonment of up to 7 years or a fine of KRW 10 million to 50 million"
local PENALTY_82_8_2 = "Art. 261(3)4: administrative fine of up to KRW 10 million"
local LABEL = "Label the video as AI-made (Art. 82-8(2))."
local NA22_DEADLINE = "2024-04-10"

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
                activity = {kind = "posting", category = "false_fact", intent = "to_defeat"},
                inside = {verdict = "prohibited", article = "250(2)"},
                outside = {verdict = "allowed", article = "250", exception = "after_election_day"},
            },
        },
    },
    tests = {
        {
            name = "f01: false facts to get someone elected",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_elect",
                        target = "candidate"},
            -- Spelled out once, so a change to what the commission sends shows here.
            expect = {verdict = "prohibited", article = "250(1)", penalty = PENALTY_250_1,
                      deadline = NA22_DEADLINE,
                      actions = {
                          {kind = "deletion_request", to = "platform", article = "82-4(3)",
                           due_hours = 24, objection_days = 3,
                           overdue = {article = "261(6)4",
                                      penalty = "Art. 261(6)4: administrative fine of up to KRW 3 million"},
                           escalation = {after = 2, kind = "referral", to = "prosecutors",
                                         article = "256(3)1(e)",
                                         penalty = "Art. 256(3)1(e): imprisonment of up to 2 years or a fine of up to KRW 4 million"}},
                          {kind = "referral", to = "prosecutors", article = "250(1)",
                           due_hours = 24, penalty = PENALTY_250_1},
                      }},
        },
        {
            name = "f02: false facts to defeat someone",
            election = "na22", date = "2024-03-01", actor = {kind = "voter"},
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat",
                        target = "prospective_candidate"},
            expect = {verdict = "prohibited", article = "250(2)", penalty = PENALTY_250_2,
                      deadline = NA22_DEADLINE,
                      actions = {deletion_request(), referral("250(2)", PENALTY_250_2)}},
        },
        {
            name = "f03: false facts long before D-90 are still prohibited",
            election = "local9", date = "2025-09-01",
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat"},
            expect = {verdict = "prohibited", article = "250(2)", deadline = "2026-06-03"},
        },
        {
            name = "f04: false facts on election day",
            election = "na22", date = NA22_DEADLINE,
            activity = {kind = "posting", category = "false_fact", intent = "to_elect"},
            expect = {verdict = "prohibited", article = "250(1)"},
        },
        {
            name = "f05: after election day a posting cannot aim at the election",
            election = "na22", date = "2024-04-11",
            activity = {kind = "posting", category = "false_fact", intent = "to_elect"},
            expect = {verdict = "allowed", article = "250", exception = "after_election_day",
                      deadline = NA22_DEADLINE},
        },
        {
            name = "f06: false facts without the aim",
            election = "na22", date = "2024-03-01",
            activity = {kind = "posting", category = "false_fact"},
            expect = {verdict = "needs_facts", article = "250", missing = {"activity.intent"},
                      deadline = NA22_DEADLINE},
        },
        {
            name = "f07: true slander in the public interest is not punished",
            election = "na22", date = "2024-03-01",
            activity = {kind = "posting", category = "slander", target = "candidate",
                        true_facts = true, public_interest = true},
            expect = {verdict = "allowed", article = "251",
                      exception = "true_and_public_interest", deadline = NA22_DEADLINE},
        },
        {
            name = "f08: slander with untrue facts",
            election = "na22", date = "2024-03-01",
            activity = {kind = "posting", category = "slander", true_facts = false,
                        public_interest = true},
            expect = {verdict = "prohibited", article = "251", penalty = PENALTY_SLANDER,
                      deadline = NA22_DEADLINE,
                      actions = {deletion_request(), referral("251", PENALTY_SLANDER)}},
        },
        {
            name = "f09: true slander not in the public interest",
            election = "na22", date = "2024-03-01",
            activity = {kind = "posting", category = "slander", true_facts = true,
                        public_interest = false},
            expect = {verdict = "prohibited", article = "251",
                      actions = {deletion_request(), referral("251", PENALTY_SLANDER)}},
        },
        {
            name = "f10: untrue facts settle it whatever the public interest",
            election = "na22", date = "2024-03-01",
            activity = {kind = "posting", category = "slander", true_facts = false},
            expect = {verdict = "prohibited", article = "251"},
        },
        {
            name = "f11: no public interest settles it whatever the truth",
            election = "na22", date = "2024-03-01",
            activity = {kind = "posting", category = "slander", public_interest = false},
            expect = {verdict = "prohibited", article = "251"},
        },
        {
            name = "f12: true slander, public interest unknown",
            election = "na22", date = "2024-03-01",
            activity = {kind = "posting", category = "slander", true_facts = true},
            expect = {verdict = "needs_facts", article = "251",
                      missing = {"activity.public_interest"}},
        },
        {
            name = "f13: slander in the public interest, truth unknown",
            election = "na22", date = "2024-03-01",
            activity = {kind = "posting", category = "slander", public_interest = true},
            expect = {verdict = "needs_facts", article = "251", missing = {"activity.true_facts"}},
        },
        {
            name = "f14: slander with neither fact",
            election = "na22", date = "2024-03-01",
            activity = {kind = "posting", category = "slander"},
            expect = {verdict = "needs_facts", article = "251",
                      missing = {"activity.true_facts", "activity.public_interest"}},
        },
        {
            name = "f15: slander after election day",
            election = "local9", date = "2026-06-04",
            activity = {kind = "posting", category = "slander", true_facts = false},
            expect = {verdict = "allowed", article = "251", exception = "after_election_day"},
        },
        {
            name = "f16: without a category nothing can be said",
            election = "na22", date = "2024-03-01", activity = {kind = "posting"},
            expect = {verdict = "needs_facts", article = "82-4", missing = {"activity.category"},
                      deadline = NA22_DEADLINE},
        },
        {
            name = "f17: campaign deepfake inside the window: deletion and referral",
            election = "na22", date = "2024-02-15",
            activity = {kind = "posting", category = "deepfake", deepfake = true,
                        purpose = "campaign", labeled = true},
            expect = {verdict = "prohibited", article = "82-8(1)", penalty = PENALTY_82_8_1,
                      window = {from = "2024-01-11", to = NA22_DEADLINE},
                      actions = {deletion_request(), referral("82-8(1)", PENALTY_82_8_1)}},
        },
        {
            name = "f18: the deepfake area's first day in force",
            election = "na22", date = "2024-01-29",
            activity = {kind = "posting", category = "deepfake", deepfake = true,
                        purpose = "campaign"},
            expect = {verdict = "prohibited", article = "82-8(1)"},
        },
        {
            name = "f19: before 2024-01-29 Art. 82-8 is not in force, even inside the window",
            election = "na22", date = "2024-01-28",
            activity = {kind = "posting", category = "deepfake", deepfake = true,
                        purpose = "campaign", labeled = false},
            expect = {verdict = "allowed", article = "82-8", exception = "not_in_force",
                      rule = "false_information/82-4/2004-03-12"},
        },
        {
            name = "f20: labeled campaign deepfake outside the window",
            election = "local9", date = "2026-03-04",
            activity = {kind = "posting", category = "deepfake", deepfake = true,
                        purpose = "campaign", labeled = true},
            expect = {verdict = "allowed", article = "82-8(2)",
                      exception = "labeled_outside_window", obligations = {LABEL},
                      window = {from = "2026-03-05", to = "2026-06-03"}},
        },
        {
            name = "f21: unlabeled campaign deepfake outside the window: deletion, no referral",
            election = "local9", date = "2026-01-05",
            activity = {kind = "posting", category = "deepfake", deepfake = true,
                        purpose = "campaign", labeled = false},
            expect = {verdict = "prohibited", article = "82-8(2)", penalty = PENALTY_82_8_2,
                      obligations = {LABEL}, actions = {deletion_request()}},
        },
        {
            name = "f22: deepfake outside the window, label unknown",
            election = "local9", date = "2026-01-05",
            activity = {kind = "posting", category = "deepfake", deepfake = true,
                        purpose = "campaign"},
            expect = {verdict = "needs_facts", article = "82-8(2)",
                      missing = {"activity.labeled"}},
        },
        {
            name = "f23: deepfake without the deepfake area's facts",
            election = "na22", date = "2024-02-15",
            activity = {kind = "posting", category = "deepfake"},
            expect = {verdict = "needs_facts", article = "82-8",
                      missing = {"activity.deepfake", "activity.purpose"}},
        },
        {
            name = "f24: vacancy election: the deepfake window opens on confirmation",
            election = "pres21", date = "2025-04-04",
            activity = {kind = "posting", category = "deepfake", deepfake = true,
                        purpose = "campaign", labeled = true},
            expect = {verdict = "prohibited", article = "82-8(1)",
                      window = {from = "2025-04-04", to = "2025-06-03"}},
        },
        {
            name = "f25: false facts before 82-8 existed are judged as ever",
            election = "pres20", date = "2022-02-01",
            activity = {kind = "posting", category = "false_fact", intent = "to_defeat"},
            expect = {verdict = "prohibited", article = "250(2)", deadline = "2022-03-09",
                      actions = {deletion_request(), referral("250(2)", PENALTY_250_2)}},
        },
    },
}
