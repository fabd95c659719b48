-- Art. 103(5): publication ceremonies for books related to candidates.
--
-- From D-90 (by-/vacancy elections: from when the cause of the election is confirmed) to election
-- day nobody may hold a publication ceremony for a book related to a candidate or a prospective
-- candidate, whoever wrote the book. Anyone may hold one for a book unrelated to them, and
-- outside the window the article restricts nothing.

local D, fmt = epcs.D, epcs.fmt

local ceremony_window = epcs.window {from = D(90), to = D(0), from_cause_confirmed = true}

local PENALTY = "Art. 256(3): imprisonment of up to 2 years or a fine of up to KRW 4 million"

local function evaluate(q, version)
    local related = q.activity.book_related_to_candidate
    if related == false then
        return epcs.allowed {
            article = "103(5)",
            exception = "book_not_related_to_candidate",
            reason = "Art. 103(5) restricts only ceremonies for books related to a candidate or prospective candidate.",
            reason_ko = "제103조제5항은 후보자(후보자가 되고자 하는 사람을 포함)와 관련 있는 저서의 출판기념회만 제한합니다.",
        }
    end
    local from, to = ceremony_window:span(q.election)
    local window = {from = from, to = to}
    if q.date < from or q.date > to then
        return epcs.allowed {
            article = "103(5)",
            window = window,
            reason = string.format(
                "Publication ceremonies are restricted only from %s to election day %s; %s lies outside.",
                fmt(from), fmt(to), fmt(q.date)),
            reason_ko = string.format(
                "출판기념회는 %s부터 선거일(%s)까지만 제한되며, %s은 그 기간 밖입니다.",
                fmt(from), fmt(to), fmt(q.date)),
        }
    end
    if related == nil then
        return epcs.needs_facts {
            article = "103(5)",
            window = window,
            missing = {"activity.book_related_to_candidate"},
            reason = string.format(
                "From %s to %s a publication ceremony is prohibited when the book relates to a candidate or prospective candidate.",
                fmt(from), fmt(to)),
            reason_ko = string.format(
                "%s부터 선거일(%s)까지는 후보자(후보자가 되고자 하는 사람을 포함)와 관련 있는 저서의 출판기념회를 개최할 수 없으므로 저서와 후보자의 관련 여부를 알아야 합니다.",
                fmt(from), fmt(to)),
        }
    end
    return epcs.prohibited {
        article = "103(5)",
        window = window,
        penalty = PENALTY,
        reason = string.format(
            "Nobody may hold a publication ceremony for a book related to a candidate or prospective candidate from %s to election day %s, whoever wrote it.",
            fmt(from), fmt(to)),
        reason_ko = string.format(
            "누구든지 %s부터 선거일(%s)까지 후보자(후보자가 되고자 하는 사람을 포함)와 관련 있는 저서의 출판기념회를 개최할 수 없으며, 저자가 누구인지는 관계없습니다.",
            fmt(from), fmt(to)),
    }
end

return epcs.area {
    name = "publication_ceremony",
    article = "103(5)",
    -- Art. 103(5) binds anyone ("누구든지"), whoever wrote the book.
    coverage = epcs.coverage {{everyone = "103(5)"}},
    title = "Publication ceremonies for candidates' books prohibited (D-90 to election day)",
    title_ko = "후보자 등과 관련 있는 저서의 출판기념회 개최 금지 (선거일 전 90일부터 선거일까지)",
    versions = {
        {
            -- Every bundled election falls long after this restriction took its present
            -- form; 2004-03-12 (the 2004 revision of the Act) stands as the version's start.
            -- Check the Act's history before adding an election held before it.
            id = "publication_ceremony/103(5)/2004-03-12",
            effective_from = "2004-03-12",
            promulgated = "2004-03-12",
            window = ceremony_window,
            evaluate = evaluate,
            probe = {
                activity = {kind = "publication_ceremony", book_related_to_candidate = true},
                inside = {verdict = "prohibited", article = "103(5)"},
                outside = {verdict = "allowed", article = "103(5)"},
            },
        },
    },
    tests = {
        {
            name = "p14: anyone, authorship irrelevant",
            election = "na22", date = "2024-02-01", actor = {kind = "publisher"},
            activity = {kind = "publication_ceremony", book_related_to_candidate = true},
            expect = {verdict = "prohibited", article = "103(5)", penalty = PENALTY,
                      window = {from = "2024-01-11", to = "2024-04-10"}},
        },
        {
            name = "p15: the day before the window",
            election = "na22", date = "2024-01-10", actor = {kind = "prospective_candidate"},
            activity = {kind = "publication_ceremony", book_related_to_candidate = true},
            expect = {verdict = "allowed", article = "103(5)",
                      window = {from = "2024-01-11", to = "2024-04-10"}},
        },
        {
            name = "a book unrelated to any candidate, inside the window",
            election = "na22", date = "2024-02-01", actor = {kind = "author"},
            activity = {kind = "publication_ceremony", book_related_to_candidate = false},
            expect = {verdict = "allowed", article = "103(5)",
                      exception = "book_not_related_to_candidate"},
        },
        {
            name = "inside the window the book's relation to candidates must be known",
            election = "na22", date = "2024-04-10", actor = {kind = "candidate"},
            activity = {kind = "publication_ceremony"},
            expect = {verdict = "needs_facts", article = "103(5)",
                      missing = {"activity.book_related_to_candidate"}},
        },
        {
            name = "outside the window the book's relation changes nothing",
            election = "na22", date = "2024-04-11",
            activity = {kind = "publication_ceremony"},
            expect = {verdict = "allowed", article = "103(5)"},
        },
        {
            name = "a candidate's own book on election day",
            election = "local9", date = "2026-06-03", actor = {kind = "candidate"},
            activity = {kind = "publication_ceremony", book_related_to_candidate = true},
            expect = {verdict = "prohibited", article = "103(5)",
                      window = {from = "2026-03-05", to = "2026-06-03"}},
        },
        {
            name = "vacancy election: D-90 (2025-03-05) is before the cause was confirmed",
            election = "pres21", date = "2025-03-05", actor = {kind = "prospective_candidate"},
            activity = {kind = "publication_ceremony", book_related_to_candidate = true},
            expect = {verdict = "allowed", article = "103(5)",
                      window = {from = "2025-04-04", to = "2025-06-03"}},
        },
        {
            name = "vacancy election: the window opens on the day the cause was confirmed",
            election = "pres21", date = "2025-04-04", actor = {kind = "publisher"},
            activity = {kind = "publication_ceremony", book_related_to_candidate = true},
            expect = {verdict = "prohibited", article = "103(5)",
                      window = {from = "2025-04-04", to = "2025-06-03"}},
        },
    },
}
