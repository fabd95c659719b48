-- Art. 93(1) and 93(2): advertising that shows a party's or a candidate's name.
--
-- Art. 93(2): from D-90 (by-/vacancy elections: from when the cause of the election is
-- confirmed, as the NEC applied it in 2025) to election day nobody may, by a method the Act does
-- not provide for, advertise writings, entertainment, plays, films, photos or other items showing
-- the name of a party or of a candidate or prospective candidate, and candidates and prospective
-- candidates may not appear in broadcast, newspaper, magazine or other ads.
-- Art. 93(1): before that, from D-120 (D-180 for acts before the amendment of 2023-08-30; by-/
-- vacancy elections: not before the cause is confirmed), nobody may distribute or post ads,
-- writings or the like showing a party's or candidate's name by a method the Act does not provide
-- for. Inside the D-90 window 93(2) is the provision cited. Both are punished under Art. 255(2).
--
-- Always allowed: ads by a method the Act provides for (Arts. 69, 70, ...: `authorized_by`), and,
-- following NEC guidance, the regular commercial ads of a business whose representative is a
-- prospective candidate, when unrelated to the election and the person does not appear.
--
-- Facts asked for, step by step: none outside both windows (nothing is restricted there); none
-- when `authorized_by` is given; otherwise whatever the remaining decision still turns on:
-- `shows_name` (both paragraphs), `appears` (93(2), where a candidate's appearance alone is
-- prohibited), and, when the ad is claimed to be a regular commercial ad, the facts of that
-- exception (`related_to_election`, `representative_is_prospective_candidate`, `appears`). All
-- missing ones are asked for at once. `medium` only shapes the reason: every medium is caught.

local D, fmt = epcs.D, epcs.fmt

local ko = epcs.cite_ko

-- Art. 93(2); the same in every version.
local ad_window = epcs.window {from = D(90), to = D(0), from_cause_confirmed = true}

-- Art. 255(2)5 punishes both 93(1) and 93(2).
local PENALTY = "Art. 255(2): imprisonment of up to 2 years or a fine of up to KRW 4 million"

local NAMES = {
    party = {"a party's name", "정당의 명칭"},
    candidate = {"a candidate's name", "후보자의 성명"},
    prospective_candidate = {"a prospective candidate's name", "후보자가 되려는 사람의 성명"},
}

local MEDIA = {
    broadcast = {"a broadcast ad", "방송광고"},
    newspaper = {"a newspaper ad", "신문광고"},
    magazine = {"a magazine ad", "잡지광고"},
    internet = {"an internet ad", "인터넷광고"},
    outdoor = {"an outdoor ad", "옥외광고"},
    other = {"an ad", "광고"},
}

local function medium_of(activity)
    return MEDIA[activity.medium] or MEDIA.other
end

local function outside(q, from, to)
    return epcs.allowed {
        article = "93",
        window = {from = from, to = to},
        reason = string.format(
            "Art. 93 restricts advertising showing parties' or candidates' names only from %s to election day %s; %s lies outside.",
            fmt(from), fmt(to), fmt(q.date)),
        reason_ko = string.format(
            "제93조는 %s부터 선거일(%s)까지만 정당의 명칭이나 후보자의 성명을 나타내는 광고 등을 제한하며, %s은 그 기간 밖입니다.",
            fmt(from), fmt(to), fmt(q.date)),
    }
end

local function method_provided(q, article, window)
    local by = q.activity.authorized_by
    return epcs.allowed {
        article = article,
        window = window,
        exception = "method_provided_by_act",
        obligations = {string.format(
            "Keep to the conditions Art. %s sets for this method (who may use it, when, how often).",
            by)},
        reason = string.format(
            "Art. %s restricts only methods the Act does not provide for; this ad uses the method of Art. %s.",
            article, by),
        reason_ko = string.format(
            "%s의 제한은 이 법에 규정되지 아니한 방법에만 적용되며, 이 광고는 %s에 규정된 방법에 의한 것입니다.",
            ko(article), ko(by)),
    }
end

local function regular_commercial(article, window)
    return epcs.allowed {
        article = article,
        window = window,
        exception = "regular_commercial_ad",
        reason = string.format(
            "A regular commercial ad of a business whose representative is a prospective candidate, unrelated to the election and without that person appearing, is not restricted by Art. %s.",
            article),
        reason_ko = string.format(
            "후보자가 되려는 사람이 대표인 업체의 통상적인 영업 광고로서 선거와 무관하고 그 사람이 출연하지 않는 광고는 %s의 제한 대상이 아닙니다.",
            ko(article)),
    }
end

local function nothing_restricted(article, window, from, to)
    return epcs.allowed {
        article = article,
        window = window,
        reason = string.format(
            "From %s to %s Art. %s restricts ads showing a party's or candidate's name%s; this one shows none%s.",
            fmt(from), fmt(to), article,
            article == "93(2)" and " or featuring a candidate" or "",
            article == "93(2)" and " and no candidate appears in it" or ""),
        reason_ko = string.format(
            "%s부터 %s까지 %s에 따라 정당의 명칭이나 후보자의 성명을 나타내는 광고%s를 할 수 없으나, 이 광고는 이에 해당하지 않습니다.",
            fmt(from), fmt(to), ko(article),
            article == "93(2)" and "와 후보자가 출연하는 광고" or ""),
    }
end

local function appears(q, window, from, to)
    local medium = medium_of(q.activity)
    return epcs.prohibited {
        article = "93(2)",
        window = window,
        penalty = PENALTY,
        reason = string.format(
            "From %s to election day %s candidates and prospective candidates may not appear in %s by a method the Act does not provide for.",
            fmt(from), fmt(to), medium[1]),
        reason_ko = string.format(
            "%s부터 선거일(%s)까지 후보자와 후보자가 되려는 사람은 이 법에 규정되지 아니한 방법으로 %s에 출연할 수 없습니다.",
            fmt(from), fmt(to), medium[2]),
    }
end

local function named(q, article, window, from, to)
    local name, medium = NAMES[q.activity.shows_name], medium_of(q.activity)
    if article == "93(2)" then
        return epcs.prohibited {
            article = article,
            window = window,
            penalty = PENALTY,
            reason = string.format(
                "From %s to election day %s nobody may advertise items showing %s, such as %s, by a method the Act does not provide for.",
                fmt(from), fmt(to), name[1], medium[1]),
            reason_ko = string.format(
                "누구든지 %s부터 선거일(%s)까지 이 법에 규정되지 아니한 방법으로 %s을 나타내는 %s 등을 할 수 없습니다.",
                fmt(from), fmt(to), name[2], medium[2]),
        }
    end
    return epcs.prohibited {
        article = article,
        window = window,
        penalty = PENALTY,
        reason = string.format(
            "From %s to %s nobody may distribute or post %s or other items showing %s by a method the Act does not provide for.",
            fmt(from), fmt(to), medium[1], name[1]),
        reason_ko = string.format(
            "누구든지 %s부터 %s까지 이 법의 규정에 의하지 아니하고는 %s을 나타내는 %s 등을 배부·게시할 수 없습니다.",
            fmt(from), fmt(to), name[2], medium[2]),
    }
end

local function evaluate(q, version)
    local election, activity = q.election, q.activity
    local first, last = version.window:span(election)
    if q.date < first or q.date > last then
        return outside(q, first, last)
    end
    -- Inside the whole period: 93(2) from its own start, 93(1) on the days before it.
    local article, from, to = "93(2)", ad_window:span(election)
    if q.date < from then
        article, from, to = "93(1)", version.first_paragraph:span(election)
    end
    local window = {from = from, to = to}

    if activity.authorized_by ~= nil then
        return method_provided(q, article, window)
    end
    if article == "93(2)" and activity.appears == true then
        return appears(q, window, from, to)
    end

    -- The exception is claimed by regular_commercial = true and stays open until one of its
    -- facts rules it out.
    local exception_open = activity.regular_commercial == true and
        activity.related_to_election ~= true and
        activity.representative_is_prospective_candidate ~= false and activity.appears ~= true
    if exception_open and activity.related_to_election == false and
        activity.representative_is_prospective_candidate == true and activity.appears == false then
        return regular_commercial(article, window)
    end

    local shows = activity.shows_name
    if shows == "none" and (article == "93(1)" or activity.appears == false) then
        return nothing_restricted(article, window, from, to)
    end
    if shows ~= nil and shows ~= "none" and not exception_open then
        return named(q, article, window, from, to)
    end

    local wanted = {"activity.shows_name"}
    if article == "93(2)" or exception_open then
        wanted[#wanted + 1] = "activity.appears"
    end
    if exception_open then
        wanted[#wanted + 1] = "activity.related_to_election"
        wanted[#wanted + 1] = "activity.representative_is_prospective_candidate"
    end
    return epcs.needs_facts {
        article = article,
        window = window,
        missing = epcs.missing(q, table.unpack(wanted)),
        reason = string.format(
            "From %s to %s Art. %s turns on whether the ad shows a party's or candidate's name%s%s.",
            fmt(from), fmt(to), article,
            article == "93(2)" and " and whether a candidate appears in it" or "",
            exception_open and ", and on the facts of the regular commercial ad exception" or ""),
        reason_ko = string.format(
            "%s부터 %s까지는 광고가 정당의 명칭이나 후보자의 성명을 나타내는지%s%s 알아야 %s의 적용 여부를 정할 수 있습니다.",
            fmt(from), fmt(to),
            article == "93(2)" and ", 후보자가 출연하는지" or "",
            exception_open and ", 통상적인 영업 광고 예외의 요건을 갖추었는지" or "", ko(article)),
    }
end

-- One entry per dated form of Art. 93(1); 93(2) is the same in both. `window` is the whole
-- restricted period (93(1)'s start to election day): it is what differs between the versions,
-- so it is what their probes exercise.
local function version(spec)
    local first_paragraph = epcs.window {
        from = D(spec.days), to = D(91), from_cause_confirmed = true,
    }
    return {
        id = spec.id,
        effective_from = spec.effective_from,
        promulgated = spec.promulgated,
        window = epcs.window {from = D(spec.days), to = D(0), from_cause_confirmed = true},
        first_paragraph = first_paragraph,
        evaluate = evaluate,
        calendar = function(election, v)
            local items = {}
            local from, to = first_paragraph:span(election)
            -- A vacancy election confirmed after D-91 has no day left for 93(1).
            if from <= to then
                items[#items + 1] = {
                    article = "93(1)", rule = v.id, from = from, to = to,
                    title = string.format(
                        "No ads or writings showing parties' or candidates' names by methods the Act does not provide (D-%d to D-91)",
                        spec.days),
                    title_ko = string.format(
                        "탈법방법에 의한 정당·후보자 명칭·성명 표시 광고·문서 등 배부·게시 금지 (선거일 전 %d일부터 선거일 전 91일까지)",
                        spec.days),
                }
            end
            from, to = ad_window:span(election)
            items[#items + 1] = {
                article = "93(2)", rule = v.id, from = from, to = to,
                title = "No ads showing parties' or candidates' names, no candidates in ads (D-90 to election day)",
                title_ko = "정당·후보자 명의 광고 및 후보자의 광고 출연 금지 (선거일 전 90일부터 선거일까지)",
            }
            return items
        end,
        -- Inside, the first days fall under 93(1) and the last under 93(2): both prohibit and
        -- carry the same penalty, so the article is left to the tests.
        probe = {
            actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate"},
            inside = {verdict = "prohibited", penalty = PENALTY},
            outside = {verdict = "allowed", article = "93"},
        },
    }
end

local TEST_PERIOD_NA22 = {from = "2023-12-12", to = "2024-04-10"}

return epcs.area {
    name = "advertising",
    article = "93",
    -- Art. 93(1) and (2) bind anyone ("누구든지"); 93(2) also bars candidates from appearing in ads.
    coverage = epcs.coverage {{everyone = "93(2)"}},
    title = "Ads showing parties' or candidates' names restricted (93(1) from D-120, 93(2) D-90 to election day)",
    title_ko = "정당·후보자 명의 광고 등 제한 (제93조제1항 선거일 전 120일부터, 제2항 선거일 전 90일부터 선거일까지)",
    versions = {
        -- Every bundled election falls long after D-180 stood in Art. 93(1); 2004-03-12 (the
        -- 2004 revision of the Act) stands as the version's start. Check the Act's history
        -- before adding an election held before it.
        version {
            id = "advertising/93/2004-03-12",
            effective_from = "2004-03-12",
            promulgated = "2004-03-12",
            days = 180,
        },
        -- The Constitutional Court found the D-180 ban incompatible with the Constitution
        -- (2022-07-21); the amendment of 2023-08-30 shortened it to D-120 from promulgation.
        version {
            id = "advertising/93/2023-08-30",
            effective_from = "2023-08-30",
            promulgated = "2023-08-30",
            days = 120,
        },
    },
    tests = {
        {
            name = "p16: name of a prospective candidate in a newspaper ad",
            election = "na22", date = "2024-02-10", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper",
                        shows_name = "prospective_candidate"},
            expect = {verdict = "prohibited", article = "93(2)", penalty = PENALTY,
                      rule = "advertising/93/2023-08-30",
                      window = {from = "2024-01-11", to = "2024-04-10"}},
        },
        {
            name = "p17: regular commercial ad exception",
            election = "na22", date = "2024-02-10", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "broadcast", regular_commercial = true,
                        related_to_election = false,
                        representative_is_prospective_candidate = true, appears = false},
            expect = {verdict = "allowed", article = "93(2)", exception = "regular_commercial_ad"},
        },
        {
            name = "a party's name in an outdoor ad on election day",
            election = "na22", date = "2024-04-10", actor = {kind = "party_member"},
            activity = {kind = "advertisement", medium = "outdoor", shows_name = "party"},
            expect = {verdict = "prohibited", article = "93(2)", penalty = PENALTY},
        },
        {
            name = "a candidate appearing in a broadcast ad without a name shown",
            election = "na22", date = "2024-03-01", actor = {kind = "candidate"},
            activity = {kind = "advertisement", medium = "broadcast", shows_name = "none",
                        appears = true},
            expect = {verdict = "prohibited", article = "93(2)", penalty = PENALTY},
        },
        {
            name = "appearing alone is not 93(1): it shows no name",
            election = "na22", date = "2024-01-10", actor = {kind = "prospective_candidate"},
            activity = {kind = "advertisement", medium = "broadcast", shows_name = "none",
                        appears = true},
            expect = {verdict = "allowed", article = "93(1)",
                      window = {from = "2023-12-12", to = "2024-01-10"}},
        },
        {
            name = "no name, nobody appearing: nothing restricted inside 93(2)",
            election = "na22", date = "2024-02-10", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "internet", shows_name = "none",
                        appears = false},
            expect = {verdict = "allowed", article = "93(2)"},
        },
        {
            name = "a method the Act provides (Art. 70 broadcast ads) lets a candidate appear",
            election = "na22", date = "2024-04-01", actor = {kind = "candidate"},
            activity = {kind = "advertisement", medium = "broadcast", shows_name = "candidate",
                        appears = true, authorized_by = "70"},
            expect = {verdict = "allowed", article = "93(2)", exception = "method_provided_by_act",
                      obligations = {"Keep to the conditions Art. 70 sets for this method (who may use it, when, how often)."}},
        },
        {
            name = "a method the Act provides, inside 93(1)",
            election = "na22", date = "2023-12-20", actor = {kind = "party_member"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "party",
                        authorized_by = "69"},
            expect = {verdict = "allowed", article = "93(1)", exception = "method_provided_by_act"},
        },
        {
            name = "regular commercial ad inside 93(1)",
            election = "na22", date = "2023-12-20", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "outdoor",
                        shows_name = "prospective_candidate", regular_commercial = true,
                        related_to_election = false,
                        representative_is_prospective_candidate = true, appears = false},
            expect = {verdict = "allowed", article = "93(1)", exception = "regular_commercial_ad"},
        },
        {
            name = "a regular commercial ad in which the prospective candidate appears",
            election = "na22", date = "2024-02-10", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "broadcast", regular_commercial = true,
                        related_to_election = false,
                        representative_is_prospective_candidate = true, appears = true},
            expect = {verdict = "prohibited", article = "93(2)"},
        },
        {
            name = "a commercial ad related to the election and showing the name",
            election = "na22", date = "2024-02-10", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "newspaper",
                        shows_name = "prospective_candidate", regular_commercial = true,
                        related_to_election = true,
                        representative_is_prospective_candidate = true, appears = false},
            expect = {verdict = "prohibited", article = "93(2)", penalty = PENALTY},
        },
        {
            name = "a claimed regular commercial ad needs the exception's facts",
            election = "na22", date = "2024-02-10", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "broadcast", regular_commercial = true},
            expect = {verdict = "needs_facts", article = "93(2)",
                      missing = {"activity.shows_name", "activity.appears",
                                 "activity.related_to_election",
                                 "activity.representative_is_prospective_candidate"}},
        },
        {
            name = "a claimed regular commercial ad showing the name needs only what is open",
            election = "na22", date = "2024-02-10", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "newspaper",
                        shows_name = "prospective_candidate", regular_commercial = true,
                        representative_is_prospective_candidate = true},
            expect = {verdict = "needs_facts", article = "93(2)",
                      missing = {"activity.appears", "activity.related_to_election"}},
        },
        {
            name = "inside 93(2) nothing given: the name and the appearance decide",
            election = "na22", date = "2024-02-10", activity = {kind = "advertisement"},
            expect = {verdict = "needs_facts", article = "93(2)",
                      missing = {"activity.shows_name", "activity.appears"}},
        },
        {
            name = "inside 93(2) no name shown: whether a candidate appears decides",
            election = "na22", date = "2024-02-10",
            activity = {kind = "advertisement", medium = "magazine", shows_name = "none"},
            expect = {verdict = "needs_facts", article = "93(2)", missing = {"activity.appears"}},
        },
        {
            name = "inside 93(1) only the name decides",
            election = "na22", date = "2023-12-12",
            activity = {kind = "advertisement", medium = "newspaper", appears = true},
            expect = {verdict = "needs_facts", article = "93(1)", missing = {"activity.shows_name"}},
        },
        {
            name = "outside both windows no fact is needed",
            election = "na22", date = "2023-12-11", activity = {kind = "advertisement"},
            expect = {verdict = "allowed", article = "93", window = TEST_PERIOD_NA22},
        },
        {
            name = "93(1) from D-120 (2023-12-12)",
            election = "na22", date = "2023-12-12", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "prohibited", article = "93(1)", penalty = PENALTY,
                      window = {from = "2023-12-12", to = "2024-01-10"}},
        },
        {
            name = "93(1) to D-91, 93(2) from D-90",
            election = "na22", date = "2024-01-10", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "party"},
            expect = {verdict = "prohibited", article = "93(1)"},
        },
        {
            name = "D-90 is 93(2)",
            election = "na22", date = "2024-01-11", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "party"},
            expect = {verdict = "prohibited", article = "93(2)",
                      window = {from = "2024-01-11", to = "2024-04-10"}},
        },
        {
            name = "the day after election day",
            election = "na22", date = "2024-04-11", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "allowed", article = "93", window = TEST_PERIOD_NA22},
        },
        {
            name = "D-161 under the D-120 version in force since 2023-08-30",
            election = "na22", date = "2023-11-01", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "allowed", article = "93", rule = "advertising/93/2023-08-30"},
        },
        {
            name = "D-150 of pres20 (2021-10-10) under the D-180 version",
            election = "pres20", date = "2021-10-10", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "prohibited", article = "93(1)", rule = "advertising/93/2004-03-12",
                      window = {from = "2021-09-10", to = "2021-12-08"}},
        },
        {
            name = "D-181 of pres20 under the D-180 version",
            election = "pres20", date = "2021-09-09", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "allowed", article = "93",
                      window = {from = "2021-09-10", to = "2022-03-09"}},
        },
        {
            name = "vacancy election: nothing restricted before the cause was confirmed",
            election = "pres21", date = "2025-04-03", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "allowed", article = "93",
                      window = {from = "2025-04-04", to = "2025-06-03"}},
        },
        {
            name = "vacancy election: 93(2) from the day the cause was confirmed (no 93(1) days left)",
            election = "pres21", date = "2025-04-04", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "prohibited", article = "93(2)",
                      window = {from = "2025-04-04", to = "2025-06-03"}},
        },
        {
            name = "by-election without a confirmation date: 93(1) from D-120",
            election = "ganghwa2024", date = "2024-07-08", actor = {kind = "publisher"},
            activity = {kind = "advertisement", medium = "outdoor", shows_name = "candidate"},
            expect = {verdict = "prohibited", article = "93(1)",
                      window = {from = "2024-06-18", to = "2024-07-17"}},
        },
        {
            name = "local8 under the D-180 version: 93(1) on D-150",
            election = "local8", date = "2022-01-02", actor = {kind = "voter"},
            activity = {kind = "advertisement", medium = "internet", shows_name = "party"},
            expect = {verdict = "prohibited", article = "93(1)",
                      window = {from = "2021-12-03", to = "2022-03-02"}},
        },
    },
}
