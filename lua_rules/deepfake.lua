-- Art. 82-8: deepfake videos for election campaigning (inserted by Act 19855 of 2023-12-28).
--
-- From D-90 to election day nobody may produce, edit, distribute, screen or post a deepfake
-- video (AI-made, hard to tell from real) for election campaigning, labeled or not (82-8(1)).
-- Outside that window such a video is allowed only when it is labeled as AI-made (82-8(2)).
-- Videos for other purposes (primaries, get-out-the-vote, legislative reports, satire not for
-- campaigning) are not campaigning; hand-edited videos without AI are not deepfakes.

local D, fmt = epcs.D, epcs.fmt

local campaign_window = epcs.window {from = D(90), to = D(0), from_cause_confirmed = true}

local PENALTY_IN_WINDOW =
    "Art. 255(5): imprisonment of up to 7 years or a fine of KRW 10 million to 50 million"
local PENALTY_UNLABELED = "Art. 261(3)4: administrative fine of up to KRW 10 million"
local LABEL = "Label the video as AI-made (Art. 82-8(2))."

local function not_a_deepfake()
    return epcs.allowed {
        article = "82-8",
        exception = "not_ai_generated",
        reason = "A video not made with AI (e.g. edited by hand) is not a deepfake under Art. 82-8.",
        reason_ko = "인공지능 기술로 만들지 않은 영상(수작업 편집 등)은 제82조의8의 딥페이크 영상이 아닙니다.",
    }
end

local function not_campaigning(purpose)
    return epcs.allowed {
        article = "82-8",
        exception = "not_campaigning",
        reason = string.format(
            "A deepfake made for '%s' is not election campaigning, so Art. 82-8 does not restrict it.",
            purpose),
        reason_ko = "선거운동 목적이 아닌 딥페이크 영상은 제82조의8의 제한 대상이 아닙니다.",
    }
end

local function evaluate(q, version)
    local missing = epcs.missing(q, "activity.deepfake", "activity.purpose")
    if missing then
        return epcs.needs_facts {
            article = "82-8",
            missing = missing,
            reason = "Whether the video is an AI deepfake and what it is for decide Art. 82-8.",
            reason_ko = "딥페이크 영상 여부와 그 목적을 알아야 제82조의8을 적용할 수 있습니다.",
        }
    end
    local activity = q.activity
    if not activity.deepfake then
        return not_a_deepfake()
    end
    if activity.purpose ~= "campaign" then
        return not_campaigning(activity.purpose)
    end
    local from, to = campaign_window:span(q.election)
    local window = {from = from, to = to}
    if q.date >= from and q.date <= to then
        return epcs.prohibited {
            article = "82-8(1)",
            window = window,
            penalty = PENALTY_IN_WINDOW,
            reason = string.format(
                "Deepfake videos for campaigning are prohibited from %s (D-90) to election day %s, labeled or not.",
                fmt(from), fmt(to)),
            reason_ko = string.format(
                "선거일 전 90일(%s)부터 선거일(%s)까지는 표시 여부와 관계없이 선거운동을 위한 딥페이크 영상을 제작·편집·배포·상영·게시할 수 없습니다.",
                fmt(from), fmt(to)),
        }
    end
    if activity.labeled == nil then
        return epcs.needs_facts {
            article = "82-8(2)",
            window = window,
            missing = {"activity.labeled"},
            reason = "Outside the D-90 window a campaign deepfake is allowed only when labeled as AI-made.",
            reason_ko = "선거일 전 90일 전에는 인공지능 기술로 만든 가상의 정보임을 표시한 경우에만 허용됩니다.",
        }
    end
    if activity.labeled then
        return epcs.allowed {
            article = "82-8(2)",
            window = window,
            exception = "labeled_outside_window",
            obligations = {LABEL},
            reason = string.format(
                "Outside %s..%s a campaign deepfake is allowed when labeled as AI-made, as this one is.",
                fmt(from), fmt(to)),
            reason_ko = "선거일 전 90일 전에는 인공지능 기술로 만든 가상의 정보임을 표시하면 허용됩니다.",
        }
    end
    return epcs.prohibited {
        article = "82-8(2)",
        window = window,
        obligations = {LABEL},
        penalty = PENALTY_UNLABELED,
        reason = string.format(
            "Outside %s..%s a campaign deepfake must be labeled as AI-made; this one is not.",
            fmt(from), fmt(to)),
        reason_ko = "인공지능 기술로 만든 가상의 정보임을 표시하지 않은 딥페이크 영상은 허용되지 않습니다.",
    }
end

-- Before 2024-01-29 Art. 82-8 did not exist; an unlabeled campaign deepfake still posted once it
-- takes force owes the label (or, inside the window, must come down).
local function not_in_force(q, first)
    local verdict = epcs.allowed {
        article = "82-8",
        exception = "not_in_force",
        reason = string.format("Art. 82-8 is in force from %s; this act on %s precedes it.",
            first.effective_from, fmt(q.date)),
        reason_ko = string.format("제82조의8은 %s부터 시행되므로 %s의 행위에는 적용되지 않습니다.",
            first.effective_from, fmt(q.date)),
    }
    local a = q.activity
    if a.deepfake and a.purpose == "campaign" and a.labeled ~= true then
        verdict.obligations = {
            "From " .. first.effective_from .. " the video must be labeled as AI-made, and inside " ..
            "the D-90 window it may not be posted at all (Art. 82-8).",
        }
    end
    return verdict
end

return epcs.area {
    name = "deepfake",
    article = "82-8",
    -- Art. 82-8(1) binds anyone ("누구든지") who makes or spreads a campaign deepfake.
    coverage = epcs.coverage {{everyone = "82-8(1)"}},
    title = "Deepfake videos for campaigning prohibited (D-90 to election day)",
    title_ko = "딥페이크 영상 등을 이용한 선거운동 금지 (선거일 전 90일부터 선거일까지)",
    not_in_force = not_in_force,
    versions = {
        {
            id = "deepfake/82-8/2024-01-29",
            effective_from = "2024-01-29",
            promulgated = "2023-12-28",
            window = campaign_window,
            evaluate = evaluate,
            probe = {
                activity = {kind = "post", deepfake = true, purpose = "campaign", labeled = true},
                inside = {verdict = "prohibited", article = "82-8(1)"},
                outside = {verdict = "allowed", article = "82-8(2)"},
            },
        },
    },
    tests = {
        {
            name = "p01: before 2024-01-29 Art. 82-8 is not in force, even inside the window",
            election = "na22", date = "2024-01-28", actor = {kind = "voter"},
            activity = {kind = "post", deepfake = true, purpose = "campaign", labeled = false},
            expect = {verdict = "allowed", article = "82-8", exception = "not_in_force",
                      rule = "deepfake/82-8/2024-01-29/not-in-force"},
        },
        {
            name = "p02: first day in force, inside the D-90 window",
            election = "na22", date = "2024-01-29", actor = {kind = "voter"},
            activity = {kind = "post", deepfake = true, purpose = "campaign"},
            expect = {verdict = "prohibited", article = "82-8(1)",
                      window = {from = "2024-01-11", to = "2024-04-10"}},
        },
        {
            name = "p03: a label does not help inside the window",
            election = "na22", date = "2024-02-15", actor = {kind = "voter"},
            activity = {kind = "distribute", deepfake = true, purpose = "campaign", labeled = true},
            expect = {verdict = "prohibited", article = "82-8(1)"},
        },
        {
            name = "p04: election day is inside the window",
            election = "na22", date = "2024-04-10", actor = {kind = "candidate"},
            activity = {kind = "screen", deepfake = true, purpose = "campaign"},
            expect = {verdict = "prohibited", article = "82-8(1)",
                      penalty = PENALTY_IN_WINDOW},
        },
        {
            name = "p05: a deepfake for a primary is not campaigning",
            election = "na22", date = "2024-02-20", actor = {kind = "party_member"},
            activity = {kind = "post", deepfake = true, purpose = "primary"},
            expect = {verdict = "allowed", article = "82-8", exception = "not_campaigning"},
        },
        {
            name = "p06: D-91, labeled",
            election = "local9", date = "2026-03-04", actor = {kind = "voter"},
            activity = {kind = "post", deepfake = true, purpose = "campaign", labeled = true},
            expect = {verdict = "allowed", article = "82-8(2)",
                      exception = "labeled_outside_window", obligations = {LABEL}},
        },
        {
            name = "p07: D-90 of 2026-06-03",
            election = "local9", date = "2026-03-05", actor = {kind = "voter"},
            activity = {kind = "post", deepfake = true, purpose = "campaign", labeled = true},
            expect = {verdict = "prohibited", article = "82-8(1)"},
        },
        {
            name = "unlabeled outside the window owes the label and risks a fine",
            election = "local9", date = "2026-01-05",
            activity = {kind = "produce", deepfake = true, purpose = "campaign", labeled = false},
            expect = {verdict = "prohibited", article = "82-8(2)", obligations = {LABEL},
                      penalty = PENALTY_UNLABELED},
        },
        {
            name = "outside the window the label must be known",
            election = "local9", date = "2026-01-05",
            activity = {kind = "edit", deepfake = true, purpose = "campaign"},
            expect = {verdict = "needs_facts", article = "82-8(2)",
                      missing = {"activity.labeled"}},
        },
        {
            name = "hand-edited video without AI is not a deepfake",
            election = "na22", date = "2024-02-01",
            activity = {kind = "post", deepfake = false, purpose = "campaign"},
            expect = {verdict = "allowed", article = "82-8", exception = "not_ai_generated"},
        },
        {
            name = "without deepfake and purpose nothing can be said",
            election = "na22", date = "2024-02-01", activity = {kind = "post"},
            expect = {verdict = "needs_facts",
                      missing = {"activity.deepfake", "activity.purpose"}},
        },
        {
            name = "vacancy election: the window opens on confirmation, not at D-90",
            election = "pres21", date = "2025-03-20",
            activity = {kind = "post", deepfake = true, purpose = "campaign", labeled = true},
            expect = {verdict = "allowed", article = "82-8(2)",
                      window = {from = "2025-04-04", to = "2025-06-03"}},
        },
        {
            name = "satire not for campaigning",
            election = "local9", date = "2026-05-01",
            activity = {kind = "post", deepfake = true, purpose = "satire"},
            expect = {verdict = "allowed", exception = "not_campaigning"},
        },
    },
}
