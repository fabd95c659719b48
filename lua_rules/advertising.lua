-- Art. 93(1) and 93(2): advertising that shows a party's or a candidate's name.
--
-- Art. 93(2): from D-90 to election day nobody may, by a method the Act does not provide for,
-- advertise writings, entertainment, plays, films, photos or other items showing the name of a
-- party or of a candidate or prospective candidate, and candidates and prospective candidates may
-- not appear in broadcast, newspaper, magazine or other ads. Its proviso: outside the election
-- period (선거기간, Art. 33(3)) a newspaper or periodical may advertise its own sale in the
-- ordinary manner (exception `periodical_sales_ad`).
-- Art. 93(1): before that, from D-120 (D-180 for acts before 2023-08-01; none for acts from
-- 2023-08-01 to 2023-08-29, see the versions) nobody may distribute or post ads, writings or the
-- like showing a party's or candidate's name by a method the Act does not provide for; for a by-
-- or vacancy election from the day its cause was confirmed, earlier or later than D-120. Inside
-- the D-90 window 93(2) is the provision cited. Both are punished under Art. 255(2).
--
-- Allowed besides: ads by a method the Act provides (`authorized_by`, judged against METHODS
-- below: who may use it, in which race, in which medium, on which days), and, following NEC
-- guidance (POLICY below), the regular commercial ads of a business whose representative is a
-- prospective candidate, when unrelated to the election and the person does not appear.
--
-- Facts asked for, step by step: none outside the restricted period; otherwise what the decision
-- still turns on: `shows_name` (both paragraphs) and `appears` (93(2), where a candidate's
-- appearance alone is prohibited), and for each exception the ad claims, the facts of that
-- exception that are still open, but only while the exception could still change the answer.
-- All missing ones are asked for at once.

local D, fmt = epcs.D, epcs.fmt

local ko = epcs.cite_ko

-- What epcs applies as policy rather than statute: each entry says since when and on whose word.
-- Commission staff change these here and say so in lua_rules/README.md.
local POLICY = epcs.policy {
    -- The text of 93(2) starts at D-90 for every election; the NEC applied it from the vacancy
    -- day in the 21st presidential election (cause 2025-04-04), and epcs does so for every by-
    -- and vacancy election (SPEC section 2). Read while the file loads: its latest entry holds.
    ad_window_from_cause_confirmed = {
        {from = "2004-03-12", value = true,
         source = "NEC practice, first on file for the 21st presidential (vacancy) election, cause 2025-04-04"},
    },
    -- The regular commercial ad exception is the NEC's reading of 93 (SPEC section 3); epcs holds
    -- no dated NEC release for it, so it applies from the version's start.
    regular_commercial_ad = {
        {from = "2004-03-12", value = true,
         source = "NEC guidance on Art. 93 (SPEC section 3), release not on file"},
    },
}

-- Art. 93(2), as the text reads (D-90) or from the cause's day under POLICY.
local ad_window = epcs.window {
    from = D(90), to = D(0),
    from_cause_confirmed = POLICY:latest("ad_window_from_cause_confirmed"),
}

-- Art. 255(2)5 punishes both 93(1) and 93(2).
local PENALTY = "Art. 255(2): imprisonment of up to 2 years or a fine of up to KRW 4 million"

-- The election period (선거기간), Art. 33(3): for a president from the day after candidate
-- registration closes (registration D-24 and D-23, Art. 49(1)), i.e. D-22; for every other race
-- from the sixth day after it closes (registration D-20 and D-19), i.e. D-13. Campaigning is
-- allowed from its first day to the day before election day (Art. 59).
local function campaign_from(election)
    return election.office == "president" and 22 or 13
end

local ELECTION_PERIOD = {
    [22] = epcs.window {from = D(22), to = D(0)},
    [13] = epcs.window {from = D(13), to = D(0)},
}

-- The races an election holds, by the facts that tell them apart (an election's office names
-- the races; `activity.local_race` and `activity.seat` say which one the ad is for).
local RACES_OF = {
    president = {"president"},
    national_assembly = {"na_constituency", "na_proportional"},
    local_office = {"governor", "local_head", "council_constituency", "council_proportional"},
    local_government_head = {"governor", "local_head"},
    local_council = {"council_constituency", "council_proportional"},
}

local RACE = {
    president = {local_race = nil, seat = nil},
    na_constituency = {seat = "constituency"},
    na_proportional = {seat = "proportional"},
    governor = {local_race = "governor"},
    local_head = {local_race = "local_head"},
    council_constituency = {local_race = "council", seat = "constituency"},
    council_proportional = {local_race = "council", seat = "proportional"},
}

local RACE_NAMES = {
    president = {"a presidential race", "대통령선거"},
    na_constituency = {"a National Assembly constituency race", "지역구국회의원선거"},
    na_proportional = {"a proportional National Assembly race", "비례대표국회의원선거"},
    governor = {"a race for mayor of a metropolitan city or provincial governor", "시·도지사선거"},
    local_head = {"a race for head of a district, city or county", "자치구·시·군의 장 선거"},
    council_constituency = {"a local council constituency race", "지역구지방의회의원선거"},
    council_proportional = {"a proportional local council race", "비례대표지방의회의원선거"},
}

-- Who may place an ad by each method, per race: the candidate, or the party that recommended
-- candidates where the Act names it ("후보자(대통령선거에 있어서 정당추천후보자와 비례대표...
-- 선거의 경우에는 후보자를 추천한 정당을 말한다)"): `party` is that party, `independent` a
-- candidate no party recommended, `candidate` any candidate.
local PRESIDENT_USERS = {party = true, independent = true}
local PARTY_USERS = {party = true}
local CANDIDATE_USERS = {candidate = true}

-- The ad methods the Act provides, by article. `last` is the last day as D-n; every method starts
-- on the first day of the election period (Art. 33(3)). Arts. 70 and 82-7 say no last day
-- beyond the campaign itself, which ends the day before election day (Art. 59).
local METHODS = {
    ["69"] = {
        article = "69(1)", medium = "newspaper", last = 2,
        what = {"newspaper ads", "신문광고"},
        users = {president = PRESIDENT_USERS, na_proportional = PARTY_USERS,
                 governor = CANDIDATE_USERS},
        limits = {
            president = "at most 70 ads in daily newspapers in all (Art. 69(1)1)",
            na_proportional = "at most 20 ads in daily newspapers in all (Art. 69(1)2)",
            governor = "at most 5 ads in daily newspapers, one more per million inhabitants above 3 million (Art. 69(1)3)",
        },
    },
    ["70"] = {
        article = "70(1)", medium = "broadcast", last = 1,
        what = {"broadcast ads", "방송광고"},
        users = {president = PRESIDENT_USERS, na_proportional = PARTY_USERS,
                 governor = CANDIDATE_USERS},
        limits = {
            president = "at most 30 ads each on television and radio, one minute each (Art. 70(1)1)",
            na_proportional = "at most 15 ads each on television and radio, one minute each (Art. 70(1)2)",
            governor = "at most 5 ads each on local television and radio, one minute each (Art. 70(1)3)",
        },
    },
    ["82-7"] = {
        article = "82-7(1)", medium = "internet", last = 1,
        what = {"internet ads on internet media sites", "인터넷언론사 홈페이지 인터넷광고"},
        users = {president = PRESIDENT_USERS, na_proportional = PARTY_USERS,
                 council_proportional = PARTY_USERS, na_constituency = CANDIDATE_USERS,
                 governor = CANDIDATE_USERS, local_head = CANDIDATE_USERS,
                 council_constituency = CANDIDATE_USERS},
        limits = {},
    },
}

local METHOD_WINDOWS = {}
for key, method in pairs(METHODS) do
    METHOD_WINDOWS[key] = {
        [22] = epcs.window {from = D(22), to = D(method.last)},
        [13] = epcs.window {from = D(13), to = D(method.last)},
    }
end

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

-- The article part of `authorized_by` that names a method: "69", "69(1)" and "69(1)1" -> "69",
-- "82-7" -> "82-7".
local function method_key(by)
    return by:match("^(%d+%-?%d*)")
end

-- The races of the election the ad can be for, given the facts that tell them apart.
local function possible_races(q)
    local list = {}
    for _, race in ipairs(RACES_OF[q.election.office] or {}) do
        local want = RACE[race]
        local activity = q.activity
        if (want.local_race == nil or activity.local_race == nil or
                activity.local_race == want.local_race) and
            (want.seat == nil or activity.seat == nil or activity.seat == want.seat) then
            list[#list + 1] = race
        end
    end
    return list
end

-- Whether the advertiser may use a method in a race: true, false, or nil when a fact is missing.
local function may_use(users, activity)
    local advertiser = activity.advertiser
    if users == nil or advertiser == "other" then
        return false
    end
    if advertiser == nil then
        return nil
    end
    if advertiser == "recommending_party" then
        return users.party == true
    end
    if users.candidate then
        return true
    end
    if not users.independent then
        return false
    end
    if activity.party_recommended == nil then
        return nil
    end
    return activity.party_recommended == false
end

local function refused(en, ko_text)
    return {status = "refused", note = {en, ko_text}}
end

-- The facts that would tell the remaining races apart, in a fixed order.
local function race_facts(q, races)
    local wanted = {}
    local need_local, need_seat = false, false
    for _, race in ipairs(races) do
        need_local = need_local or RACE[race].local_race ~= RACE[races[1]].local_race
        need_seat = need_seat or RACE[race].seat ~= RACE[races[1]].seat
    end
    if need_local then
        wanted[#wanted + 1] = "activity.local_race"
    end
    if need_seat then
        wanted[#wanted + 1] = "activity.seat"
    end
    return wanted
end

local function method_refused(method, by, q, from, to)
    local m = method
    if m == nil then
        return refused(
            string.format(
                "epcs knows Arts. 69 (newspaper ads), 70 (broadcast ads) and 82-7 (internet ads) as the ad methods the Act provides; Art. %s is not one of them, so it does not take the ad out of Art. 93.",
                by),
            string.format(
                "이 법이 정한 광고 방법으로 epcs가 아는 것은 제69조(신문광고), 제70조(방송광고), 제82조의7(인터넷광고)이며, %s는 그 방법이 아니므로 제93조의 적용을 벗어나게 하지 않습니다.",
                ko(by)))
    end
    if q.date < from or q.date > to then
        return refused(
            string.format("Art. %s %s run only from %s, the first day of the election period, to %s; %s lies outside.",
                m.article, m.what[1], fmt(from), fmt(to), fmt(q.date)),
            string.format("%s의 %s는 선거기간개시일인 %s부터 %s까지만 할 수 있으며, %s은 그 기간 밖입니다.",
                ko(m.article), m.what[2], fmt(from), fmt(to), fmt(q.date)))
    end
    if q.activity.medium ~= nil and q.activity.medium ~= m.medium then
        return refused(
            string.format("Art. %s provides %s, and this ad is %s.", m.article, m.what[1],
                medium_of(q.activity)[1]),
            string.format("%s는 %s에 관한 규정이고, 이 광고는 %s입니다.", ko(m.article), m.what[2],
                medium_of(q.activity)[2]))
    end
    return nil
end

-- Judges a claimed Act-provided method: provided, refused (with the reason), or open (the
-- missing facts that decide it).
local function check_method(q)
    local by = q.activity.authorized_by
    local key = method_key(by)
    local method = METHODS[key]
    local from, to
    if method then
        from, to = METHOD_WINDOWS[key][campaign_from(q.election)]:span(q.election)
    end
    local early = method_refused(method, by, q, from, to)
    if early then
        return early
    end
    local races, open, usable = possible_races(q), false, {}
    for _, race in ipairs(races) do
        local ok = may_use(method.users[race], q.activity)
        open = open or ok == nil
        if ok ~= false then
            usable[#usable + 1] = race
        end
    end
    if #usable == 0 then
        local race = #races == 1 and RACE_NAMES[races[1]] or {"this election's races", "이 선거"}
        return refused(
            string.format("Art. %s provides %s only to the candidates or parties it names, in the races it names; in %s this ad's advertiser is not one of them.",
                method.article, method.what[1], race[1]),
            string.format("%s의 %s는 같은 조가 정한 선거의 후보자 또는 정당만 할 수 있으며, %s에서 이 광고의 광고주는 이에 해당하지 않습니다.",
                ko(method.article), method.what[2], race[2]))
    end
    local missing = {}
    if q.activity.medium == nil then
        missing[#missing + 1] = "activity.medium"
    end
    local differs = false
    for _, race in ipairs(races) do
        differs = differs or method.users[race] ~= method.users[races[1]]
    end
    if #usable < #races or (q.activity.advertiser == nil and differs) then
        for _, path in ipairs(race_facts(q, races)) do
            missing[#missing + 1] = path
        end
    end
    if q.activity.advertiser == nil then
        missing[#missing + 1] = "activity.advertiser"
    elseif open and q.activity.party_recommended == nil then
        missing[#missing + 1] = "activity.party_recommended"
    end
    if #missing > 0 then
        return {status = "open", missing = missing,
                note = {string.format("whether the ad is one of Art. %s's %s", method.article,
                    method.what[1]),
                        string.format("%s의 %s에 해당하는지", ko(method.article), method.what[2])}}
    end
    return {status = "provided", method = method, race = #races == 1 and races[1] or nil,
            from = from, to = to}
end

local function with_notes(text, notes, index)
    local parts = {text}
    for _, note in ipairs(notes or {}) do
        parts[#parts + 1] = note[index]
    end
    return table.concat(parts, " ")
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

local function method_provided(q, article, window, found)
    local method = found.method
    local obligations = {string.format(
        "Keep to the conditions Art. %s sets for this method (who may use it, when, how often).",
        method.article)}
    local limit = found.race and method.limits[found.race]
    if limit then
        obligations[2] = string.format("In %s: %s.", RACE_NAMES[found.race][1], limit)
    end
    return epcs.allowed {
        article = article,
        window = window,
        exception = "method_provided_by_act",
        obligations = obligations,
        reason = string.format(
            "Art. %s restricts only methods the Act does not provide for; this ad is one of the %s Art. %s provides from %s to %s.",
            article, method.what[1], method.article, fmt(found.from), fmt(found.to)),
        reason_ko = string.format(
            "%s의 제한은 이 법에 규정되지 아니한 방법에만 적용되며, 이 광고는 %s부터 %s까지 할 수 있는 %s의 %s입니다.",
            ko(article), fmt(found.from), fmt(found.to), ko(method.article), method.what[2]),
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

local function periodical_sales(window, period_from)
    return epcs.allowed {
        article = "93(2)",
        window = window,
        exception = "periodical_sales_ad",
        reason = string.format(
            "Before the election period (from %s), the proviso of Art. 93(2) lets a newspaper or periodical advertise its own sale in the ordinary manner.",
            fmt(period_from)),
        reason_ko = string.format(
            "선거기간(%s부터)이 아닌 때에 신문 또는 정기간행물의 판매를 위하여 통상적인 방법으로 하는 광고는 제93조제2항 단서에 따라 제한되지 않습니다.",
            fmt(period_from)),
    }
end

local function nothing_restricted(article, window, from, to, notes)
    return epcs.allowed {
        article = article,
        window = window,
        reason = with_notes(string.format(
            "From %s to %s Art. %s restricts ads showing a party's or candidate's name%s; this one shows none%s.",
            fmt(from), fmt(to), article,
            article == "93(2)" and " or featuring a candidate" or "",
            article == "93(2)" and " and no candidate appears in it" or ""), notes, 1),
        reason_ko = with_notes(string.format(
            "%s부터 %s까지 %s에 따라 정당의 명칭이나 후보자의 성명을 나타내는 광고%s를 할 수 없으나, 이 광고는 이에 해당하지 않습니다.",
            fmt(from), fmt(to), ko(article),
            article == "93(2)" and "와 후보자가 출연하는 광고" or ""), notes, 2),
    }
end

local function appears(q, window, from, to, notes)
    local medium = medium_of(q.activity)
    return epcs.prohibited {
        article = "93(2)",
        window = window,
        penalty = PENALTY,
        reason = with_notes(string.format(
            "From %s to election day %s candidates and prospective candidates may not appear in %s by a method the Act does not provide for.",
            fmt(from), fmt(to), medium[1]), notes, 1),
        reason_ko = with_notes(string.format(
            "%s부터 선거일(%s)까지 후보자와 후보자가 되려는 사람은 이 법에 규정되지 아니한 방법으로 %s에 출연할 수 없습니다.",
            fmt(from), fmt(to), medium[2]), notes, 2),
    }
end

local function named(q, article, window, from, to, notes)
    local name, medium = NAMES[q.activity.shows_name], medium_of(q.activity)
    if article == "93(2)" then
        return epcs.prohibited {
            article = article,
            window = window,
            penalty = PENALTY,
            reason = with_notes(string.format(
                "From %s to election day %s nobody may advertise items showing %s, such as %s, by a method the Act does not provide for.",
                fmt(from), fmt(to), name[1], medium[1]), notes, 1),
            reason_ko = with_notes(string.format(
                "누구든지 %s부터 선거일(%s)까지 이 법에 규정되지 아니한 방법으로 %s을 나타내는 %s 등을 할 수 없습니다.",
                fmt(from), fmt(to), name[2], medium[2]), notes, 2),
        }
    end
    return epcs.prohibited {
        article = article,
        window = window,
        penalty = PENALTY,
        reason = with_notes(string.format(
            "From %s to %s nobody may distribute or post %s or other items showing %s by a method the Act does not provide for.",
            fmt(from), fmt(to), medium[1], name[1]), notes, 1),
        reason_ko = with_notes(string.format(
            "누구든지 %s부터 %s까지 이 법의 규정에 의하지 아니하고는 %s을 나타내는 %s 등을 배부·게시할 수 없습니다.",
            fmt(from), fmt(to), name[2], medium[2]), notes, 2),
    }
end

-- The ad judged by Art. 93 alone, no exception applied: "allowed" or "prohibited" and the
-- verdict, or "needs" and the facts it turns on.
local function judge(q, article, window, from, to, notes)
    local activity = q.activity
    if article == "93(2)" and activity.appears == true then
        return "prohibited", appears(q, window, from, to, notes)
    end
    local shows = activity.shows_name
    if shows ~= nil and shows ~= "none" then
        return "prohibited", named(q, article, window, from, to, notes)
    end
    if shows == "none" and (article == "93(1)" or activity.appears == false) then
        return "allowed", nothing_restricted(article, window, from, to, notes)
    end
    if article == "93(2)" then
        return "needs", epcs.missing(q, "activity.shows_name", "activity.appears")
    end
    return "needs", {"activity.shows_name"}
end

-- The proviso of 93(2): outside the election period, a newspaper's or periodical's ad for its
-- own sale in the ordinary manner.
local function check_periodical(q, period_from)
    if q.date >= period_from then
        return refused(
            string.format("The proviso of Art. 93(2) for a newspaper's or periodical's sales ads does not apply in the election period, which began on %s.",
                fmt(period_from)),
            string.format("신문·정기간행물 판매 광고에 관한 제93조제2항 단서는 선거기간(%s부터)에는 적용되지 않습니다.",
                fmt(period_from)))
    end
    if q.activity.ordinary_manner == false then
        return refused(
            "The proviso of Art. 93(2) covers only sales ads placed in the ordinary manner.",
            "제93조제2항 단서는 통상적인 방법에 의한 판매 광고에만 적용됩니다.")
    end
    if q.activity.ordinary_manner == nil then
        return {status = "open", missing = {"activity.ordinary_manner"},
                note = {"whether the periodical's sales ad is placed in the ordinary manner",
                        "정기간행물 판매 광고가 통상적인 방법에 의한 것인지"}}
    end
    return {status = "provided"}
end

local function check_regular_commercial(q)
    local activity = q.activity
    if activity.related_to_election == true or
        activity.representative_is_prospective_candidate == false or activity.appears == true then
        return {status = "closed"}
    end
    local missing = epcs.missing(q, "activity.appears", "activity.related_to_election",
        "activity.representative_is_prospective_candidate")
    if missing then
        return {status = "open", missing = missing,
                note = {"the facts of the regular commercial ad exception",
                        "통상적인 영업 광고 예외의 요건을 갖추었는지"}}
    end
    return {status = "provided"}
end

local function needs(q, article, window, from, to, missing, phrases)
    local en, ko_parts = {}, {}
    for _, phrase in ipairs(phrases) do
        en[#en + 1], ko_parts[#ko_parts + 1] = phrase[1], phrase[2]
    end
    return epcs.needs_facts {
        article = article,
        window = window,
        missing = missing,
        reason = string.format("From %s to %s Art. %s turns on %s.", fmt(from), fmt(to), article,
            table.concat(en, ", and on ")),
        reason_ko = string.format("%s부터 %s까지는 %s 알아야 %s의 적용 여부를 정할 수 있습니다.",
            fmt(from), fmt(to), table.concat(ko_parts, ", "), ko(article)),
    }
end

local function append_new(list, paths)
    for _, path in ipairs(paths or {}) do
        local seen = false
        for _, have in ipairs(list) do
            seen = seen or have == path
        end
        if not seen then
            list[#list + 1] = path
        end
    end
end

-- The exceptions the ad claims, in order; each is provided (its verdict), refused (a note for the
-- reason), closed (silently) or open (the facts that decide it).
local function exceptions(q, article, window)
    local activity, found = q.activity, {}
    if activity.authorized_by ~= nil then
        local r = check_method(q)
        r.verdict = r.status == "provided" and method_provided(q, article, window, r)
        found[#found + 1] = r
    end
    local period_from = ELECTION_PERIOD[campaign_from(q.election)]:span(q.election)
    if article == "93(2)" and activity.periodical_sale == true then
        local r = check_periodical(q, period_from)
        r.verdict = r.status == "provided" and periodical_sales(window, period_from)
        found[#found + 1] = r
    end
    if POLICY:value("regular_commercial_ad", q.date) and activity.regular_commercial == true then
        local r = check_regular_commercial(q)
        r.verdict = r.status == "provided" and regular_commercial(article, window)
        found[#found + 1] = r
    end
    return found
end

local function evaluate(q, version)
    local election = q.election
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

    local notes, open = {}, {}
    for _, r in ipairs(exceptions(q, article, window)) do
        if r.verdict then
            return r.verdict
        elseif r.status == "refused" then
            notes[#notes + 1] = r.note
        elseif r.status == "open" then
            open[#open + 1] = r
        end
    end
    local kind, result = judge(q, article, window, from, to, notes)
    if kind == "allowed" or (kind == "prohibited" and #open == 0) then
        return result
    end
    local missing, phrases = {}, {}
    if kind == "needs" then
        append_new(missing, result)
        phrases[1] = {
            "whether the ad shows a party's or candidate's name" ..
                (article == "93(2)" and " and whether a candidate appears in it" or ""),
            "광고가 정당의 명칭이나 후보자의 성명을 나타내는지" ..
                (article == "93(2)" and ", 후보자가 출연하는지" or ""),
        }
    end
    for _, r in ipairs(open) do
        append_new(missing, r.missing)
        phrases[#phrases + 1] = r.note
    end
    return needs(q, article, window, from, to, missing, phrases)
end

-- One entry per dated form of Art. 93(1); 93(2) is the same in all. `window` is the whole
-- restricted period (93(1)'s start, or 93(2)'s where 93(1) restricts no ads, to election day):
-- it is what differs between the versions, so it is what their probes exercise.
local function version(spec)
    local first_paragraph = spec.days and epcs.window {
        from = D(spec.days), to = D(91), starts_at_cause_confirmed = true,
    }
    local whole = spec.days and epcs.window {
        from = D(spec.days), to = D(0), starts_at_cause_confirmed = true,
    } or ad_window
    return {
        id = spec.id,
        effective_from = spec.effective_from,
        promulgated = spec.promulgated,
        window = whole,
        first_paragraph = first_paragraph,
        evaluate = evaluate,
        calendar = function(election, v)
            local items = {}
            local from, to
            if first_paragraph then
                from, to = first_paragraph:span(election)
            end
            -- A vacancy election confirmed after D-91 has no day left for 93(1).
            if from and from <= to then
                local start = election.cause_confirmed and
                    {"from the day the cause was confirmed", "실시사유가 확정된 때부터"} or
                    {string.format("D-%d", spec.days), string.format("선거일 전 %d일부터", spec.days)}
                items[#items + 1] = {
                    article = "93(1)", rule = v.id, from = from, to = to,
                    title = string.format(
                        "No ads or writings showing parties' or candidates' names by methods the Act does not provide (%s to D-91)",
                        start[1]),
                    title_ko = string.format(
                        "탈법방법에 의한 정당·후보자 명칭·성명 표시 광고·문서 등 배부·게시 금지 (%s 선거일 전 91일까지)",
                        start[2]),
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
local NA22_93_2 = {from = "2024-01-11", to = "2024-04-10"}
local GANGHWA_93_1 = {from = "2024-03-09", to = "2024-07-17"}

-- A newspaper ad of a party's list in na22's election period, as the tests vary it.
local function ad(fields)
    local activity = {kind = "advertisement"}
    for k, v in pairs(fields) do
        activity[k] = v
    end
    return activity
end

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
        -- The Constitutional Court found 93(1)'s ban on posting ads and writings (광고, 문서·도화
        -- 첩부·게시) incompatible with the Constitution and let it apply until 2023-07-31 (2018헌바
        -- 357 등, 2022-07-21; the printed matter part likewise, 2017헌바100 등, same day). The
        -- Assembly missed that day: from 2023-08-01 the part lapsed (the "입법공백" the NEC and
        -- the press reported), until the amendment of 2023-08-30 re-enacted the ban at D-120.
        -- The ads this area judges are posted (broadcast, printed, online, outdoor), so epcs reads
        -- 93(1) as restricting none of them on those days; 93(2) was never in question.
        version {
            id = "advertising/93/2023-08-01",
            effective_from = "2023-08-01",
        },
        -- Act 19696 of 2023-08-30, in force on promulgation: D-120.
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
                      rule = "advertising/93/2023-08-30", window = NA22_93_2},
        },
        {
            name = "p17: regular commercial ad exception",
            election = "na22", date = "2024-02-10", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "broadcast", regular_commercial = true,
                        related_to_election = false,
                        representative_is_prospective_candidate = true, appears = false},
            expect = {verdict = "allowed", article = "93(2)", exception = "regular_commercial_ad"},
        },
        -- Art. 69(1): newspaper ads from the election period's first day (D-13, 2024-03-28) to D-2.
        {
            name = "a01: a prospective candidate's newspaper ad 'under Art. 69' before the election period",
            election = "na22", date = "2024-02-10", actor = {kind = "prospective_candidate"},
            activity = ad {medium = "newspaper", shows_name = "prospective_candidate",
                           authorized_by = "69"},
            expect = {verdict = "prohibited", article = "93(2)", window = NA22_93_2},
        },
        {
            name = "a02: a party's list ad in a daily newspaper in the election period (Art. 69(1)2)",
            election = "na22", date = "2024-03-28", actor = {kind = "publisher"},
            activity = ad {medium = "newspaper", shows_name = "party", authorized_by = "69",
                           seat = "proportional", advertiser = "recommending_party"},
            expect = {verdict = "allowed", article = "93(2)", exception = "method_provided_by_act",
                      obligations = {
                          "Keep to the conditions Art. 69(1) sets for this method (who may use it, when, how often).",
                          "In a proportional National Assembly race: at most 20 ads in daily newspapers in all (Art. 69(1)2)."}},
        },
        {
            name = "a03: Art. 69 gives a constituency candidate no newspaper ads",
            election = "na22", date = "2024-04-01", actor = {kind = "candidate"},
            activity = ad {medium = "newspaper", shows_name = "candidate", authorized_by = "69",
                           seat = "constituency", advertiser = "candidate"},
            expect = {verdict = "prohibited", article = "93(2)", penalty = PENALTY},
        },
        {
            name = "a04: Art. 70 broadcast ads run to the day before election day; a candidate may appear",
            election = "na22", date = "2024-04-09", actor = {kind = "media_company"},
            activity = ad {medium = "broadcast", shows_name = "party", appears = true,
                           authorized_by = "70(1)", seat = "proportional",
                           advertiser = "recommending_party"},
            expect = {verdict = "allowed", article = "93(2)", exception = "method_provided_by_act"},
        },
        {
            name = "a05: Art. 69 newspaper ads end on D-2",
            election = "na22", date = "2024-04-09", actor = {kind = "publisher"},
            activity = ad {medium = "newspaper", shows_name = "party", authorized_by = "69",
                           seat = "proportional", advertiser = "recommending_party"},
            expect = {verdict = "prohibited", article = "93(2)"},
        },
        {
            name = "a06: a party's presidential candidate does not place Art. 69 ads in his own name",
            election = "pres20", date = "2022-02-15", actor = {kind = "candidate"},
            activity = ad {medium = "newspaper", shows_name = "candidate", authorized_by = "69",
                           advertiser = "candidate", party_recommended = true},
            expect = {verdict = "prohibited", article = "93(2)"},
        },
        {
            name = "a07: an independent presidential candidate's newspaper ad on the election period's first day",
            election = "pres20", date = "2022-02-15", actor = {kind = "candidate"},
            activity = ad {medium = "newspaper", shows_name = "candidate", authorized_by = "69",
                           advertiser = "candidate", party_recommended = false},
            expect = {verdict = "allowed", article = "93(2)", exception = "method_provided_by_act",
                      window = {from = "2021-12-09", to = "2022-03-09"}},
        },
        {
            name = "a08: the day before a presidential election period (D-23) has no Art. 69 ads",
            election = "pres20", date = "2022-02-14", actor = {kind = "publisher"},
            activity = ad {medium = "newspaper", shows_name = "party", authorized_by = "69",
                           advertiser = "recommending_party"},
            expect = {verdict = "prohibited", article = "93(2)"},
        },
        {
            name = "a09: an Art. 69 claim in a National Assembly election needs the seat and the advertiser",
            election = "na22", date = "2024-04-01", actor = {kind = "publisher"},
            activity = ad {medium = "newspaper", shows_name = "candidate", authorized_by = "69"},
            expect = {verdict = "needs_facts", article = "93(2)",
                      missing = {"activity.seat", "activity.advertiser"}},
        },
        {
            name = "a10: an article that is no ad method (Art. 82-8) does not make the ad lawful",
            election = "na22", date = "2024-03-01", actor = {kind = "party_member"},
            activity = ad {medium = "outdoor", shows_name = "party", authorized_by = "82-8"},
            expect = {verdict = "prohibited", article = "93(2)", penalty = PENALTY},
        },
        -- Art. 93(1) for a by-election: from the day the cause was confirmed (ganghwa2024:
        -- 2024-03-09), not from D-120 (2024-06-18).
        {
            name = "a11: ganghwa2024 on 2024-04-01 is inside 93(1)",
            election = "ganghwa2024", date = "2024-04-01", actor = {kind = "publisher"},
            activity = ad {medium = "outdoor", shows_name = "candidate"},
            expect = {verdict = "prohibited", article = "93(1)", window = GANGHWA_93_1,
                      rule = "advertising/93/2023-08-30"},
        },
        {
            name = "a12: ganghwa2024 the day before the cause was confirmed",
            election = "ganghwa2024", date = "2024-03-08", actor = {kind = "publisher"},
            activity = ad {medium = "outdoor", shows_name = "candidate"},
            expect = {verdict = "allowed", article = "93",
                      window = {from = "2024-03-09", to = "2024-10-16"}},
        },
        {
            name = "a13: ganghwa2024 on the day the cause was confirmed",
            election = "ganghwa2024", date = "2024-03-09", actor = {kind = "publisher"},
            activity = ad {medium = "outdoor", shows_name = "candidate"},
            expect = {verdict = "prohibited", article = "93(1)", window = GANGHWA_93_1},
        },
        {
            name = "a14: a county head race has no Art. 69 newspaper ads",
            election = "ganghwa2024", date = "2024-10-05", actor = {kind = "candidate"},
            activity = ad {medium = "newspaper", shows_name = "candidate", authorized_by = "69",
                           local_race = "local_head", advertiser = "candidate"},
            expect = {verdict = "prohibited", article = "93(2)",
                      window = {from = "2024-07-18", to = "2024-10-16"}},
        },
        -- The proviso of Art. 93(2): outside the election period, a periodical's sales ads.
        {
            name = "a15: a newspaper's ordinary sales ad naming a candidate before the election period",
            election = "na22", date = "2024-02-10", actor = {kind = "publisher"},
            activity = ad {medium = "newspaper", shows_name = "candidate", periodical_sale = true,
                           ordinary_manner = true},
            expect = {verdict = "allowed", article = "93(2)", exception = "periodical_sales_ad"},
        },
        {
            name = "a16: the proviso ends when the election period begins (D-13)",
            election = "na22", date = "2024-03-28", actor = {kind = "publisher"},
            activity = ad {medium = "magazine", shows_name = "candidate", periodical_sale = true,
                           ordinary_manner = true},
            expect = {verdict = "prohibited", article = "93(2)", penalty = PENALTY},
        },
        {
            name = "a17: the last day before the election period (D-14)",
            election = "na22", date = "2024-03-27", actor = {kind = "publisher"},
            activity = ad {medium = "magazine", shows_name = "candidate", periodical_sale = true,
                           ordinary_manner = true},
            expect = {verdict = "allowed", article = "93(2)", exception = "periodical_sales_ad"},
        },
        {
            name = "a18: a periodical's sales ad naming a candidate needs the manner",
            election = "na22", date = "2024-02-10", actor = {kind = "publisher"},
            activity = ad {medium = "magazine", shows_name = "candidate", periodical_sale = true},
            expect = {verdict = "needs_facts", article = "93(2)",
                      missing = {"activity.ordinary_manner"}},
        },
        {
            name = "a19: a sales ad out of the ordinary manner",
            election = "na22", date = "2024-02-10", actor = {kind = "publisher"},
            activity = ad {medium = "magazine", shows_name = "candidate", periodical_sale = true,
                           ordinary_manner = false},
            expect = {verdict = "prohibited", article = "93(2)"},
        },
        -- The Constitutional Court's gap: D-180 to 2023-07-31, no 93(1) ad ban 2023-08-01 to
        -- 2023-08-29, D-120 from 2023-08-30.
        {
            name = "a20: 2023-07-31, the last day of the D-180 ban",
            election = "na22", date = "2023-07-31", actor = {kind = "publisher"},
            activity = ad {medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "allowed", article = "93", rule = "advertising/93/2004-03-12",
                      window = {from = "2023-10-13", to = "2024-04-10"}},
        },
        {
            name = "a21: 2023-08-01, 93(1)'s ad ban lapsed",
            election = "na22", date = "2023-08-01", actor = {kind = "publisher"},
            activity = ad {medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "allowed", article = "93", rule = "advertising/93/2023-08-01",
                      window = NA22_93_2},
        },
        {
            name = "a22: 2023-08-29, the last day without a 93(1) ad ban",
            election = "na22", date = "2023-08-29", actor = {kind = "publisher"},
            activity = ad {medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "allowed", article = "93", rule = "advertising/93/2023-08-01",
                      window = NA22_93_2},
        },
        {
            name = "a23: 2023-08-30, the D-120 amendment in force",
            election = "na22", date = "2023-08-30", actor = {kind = "publisher"},
            activity = ad {medium = "newspaper", shows_name = "candidate"},
            expect = {verdict = "allowed", article = "93", rule = "advertising/93/2023-08-30",
                      window = TEST_PERIOD_NA22},
        },
        {
            name = "a24: pres21 (vacancy): a party's Art. 70 broadcast ad on the election period's first day",
            election = "pres21", date = "2025-05-12", actor = {kind = "media_company"},
            activity = ad {medium = "broadcast", shows_name = "candidate", authorized_by = "70",
                           advertiser = "recommending_party"},
            expect = {verdict = "allowed", article = "93(2)", exception = "method_provided_by_act"},
        },
        {
            name = "a25: byel2021_seoul: 93(1) from the vacancy (2020-07-10), under the D-180 version",
            election = "byel2021_seoul", date = "2020-07-10", actor = {kind = "publisher"},
            activity = ad {medium = "outdoor", shows_name = "candidate"},
            expect = {verdict = "prohibited", article = "93(1)", rule = "advertising/93/2004-03-12",
                      window = {from = "2020-07-10", to = "2021-01-06"}},
        },
        {
            name = "a26: a governor candidate's newspaper ad (Art. 69(1)3)",
            election = "local8", date = "2022-05-19", actor = {kind = "candidate"},
            activity = ad {medium = "newspaper", shows_name = "candidate", authorized_by = "69",
                           local_race = "governor", advertiser = "candidate"},
            expect = {verdict = "allowed", article = "93(2)", exception = "method_provided_by_act"},
        },
        {
            name = "a27: a constituency candidate's internet ad on an internet media site (Art. 82-7)",
            election = "na22", date = "2024-04-09", actor = {kind = "candidate"},
            activity = ad {medium = "internet", shows_name = "candidate", appears = true,
                           authorized_by = "82-7", seat = "constituency",
                           advertiser = "candidate"},
            expect = {verdict = "allowed", article = "93(2)", exception = "method_provided_by_act"},
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
            name = "an Art. 69 claim inside 93(1) is no method: its ads run only in the election period",
            election = "na22", date = "2023-12-20", actor = {kind = "party_member"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "party",
                        authorized_by = "69"},
            expect = {verdict = "prohibited", article = "93(1)", penalty = PENALTY},
        },
        {
            name = "an unproven method does not matter for an ad nothing restricts",
            election = "na22", date = "2024-04-01", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "none",
                        appears = false, authorized_by = "69"},
            expect = {verdict = "allowed", article = "93(2)"},
        },
        {
            name = "an Art. 69 claim in a broadcast ad is refused without asking more",
            election = "na22", date = "2024-04-01", actor = {kind = "media_company"},
            activity = {kind = "advertisement", medium = "broadcast", shows_name = "party",
                        authorized_by = "69"},
            expect = {verdict = "prohibited", article = "93(2)"},
        },
        {
            name = "an Art. 70 claim with nothing else asks every open fact at once",
            election = "na22", date = "2024-04-01", actor = {kind = "media_company"},
            activity = {kind = "advertisement", authorized_by = "70"},
            expect = {verdict = "needs_facts", article = "93(2)",
                      missing = {"activity.shows_name", "activity.appears", "activity.medium",
                                 "activity.seat", "activity.advertiser"}},
        },
        {
            name = "a presidential candidate's own Art. 69 ad needs whether a party recommended him",
            election = "pres20", date = "2022-03-01", actor = {kind = "candidate"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate",
                        authorized_by = "69", advertiser = "candidate"},
            expect = {verdict = "needs_facts", article = "93(2)",
                      missing = {"activity.party_recommended"}},
        },
        {
            name = "an Art. 69 claim in a nationwide local election needs the race",
            election = "local8", date = "2022-05-20", actor = {kind = "candidate"},
            activity = {kind = "advertisement", medium = "newspaper", shows_name = "candidate",
                        authorized_by = "69", advertiser = "candidate"},
            expect = {verdict = "needs_facts", article = "93(2)",
                      missing = {"activity.local_race", "activity.seat"}},
        },
        {
            name = "anyone else's ad is no Art. 70 method, whatever the race",
            election = "na22", date = "2024-04-01", actor = {kind = "business"},
            activity = {kind = "advertisement", medium = "broadcast", shows_name = "party",
                        authorized_by = "70", advertiser = "other"},
            expect = {verdict = "prohibited", article = "93(2)"},
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
            expect = {verdict = "prohibited", article = "93(2)", window = NA22_93_2},
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
            name = "local8 under the D-180 version: 93(1) on D-150",
            election = "local8", date = "2022-01-02", actor = {kind = "voter"},
            activity = {kind = "advertisement", medium = "internet", shows_name = "party"},
            expect = {verdict = "prohibited", article = "93(1)",
                      window = {from = "2021-12-03", to = "2022-03-02"}},
        },
    },
}
