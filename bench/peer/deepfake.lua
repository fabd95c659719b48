-- The bench peer's deepfake check: lua_rules/deepfake.lua (Art. 82-8) ported to plain
-- LuaJIT for nginx + libnginx-mod-http-lua, with what epcsd's host does around it (election
-- table, day numbers, the version in force, fact checks, the verdict map) written here by hand,
-- as a team building this on nginx would. Run per request by `content_by_lua_block` in
-- bench/peer/nginx.conf; bench/run compares its verdict with epcsd's before measuring.
--
-- Same law as lua_rules/deepfake.lua: D-90 to election day inclusive (from the day the cause was
-- confirmed for a vacancy/by-election when later), in force from 2024-01-29; inside the window
-- prohibited labeled or not (82-8(1)); outside it allowed only when labeled (82-8(2)); other
-- purposes are not campaigning; a video not made with AI is not a deepfake.

local msgpack = require("msgpack")

local floor, format, type, pairs = math.floor, string.format, type, pairs

local M = {}

-- A fixed stand-in for epcsd's ruleset id (a SHA-256 over the rule files there).
local RULESET = "peer-deepfake-1"

-- Day numbers (days since 1970-01-01), H. Hinnant's civil calendar algorithms.
local function days_from_civil(y, m, d)
    if m <= 2 then
        y = y - 1
    end
    local era = floor(y / 400)
    local yoe = y - era * 400
    local mp = m > 2 and m - 3 or m + 9
    local doy = floor((153 * mp + 2) / 5) + d - 1
    local doe = yoe * 365 + floor(yoe / 4) - floor(yoe / 100) + doy
    return era * 146097 + doe - 719468
end

local function civil_from_days(z)
    z = z + 719468
    local era = floor(z / 146097)
    local doe = z - era * 146097
    local yoe = floor((doe - floor(doe / 1460) + floor(doe / 36524) - floor(doe / 146096)) / 365)
    local doy = doe - (365 * yoe + floor(yoe / 4) - floor(yoe / 100))
    local mp = floor((5 * doy + 2) / 153)
    local d = doy - floor((153 * mp + 2) / 5) + 1
    local m = mp < 10 and mp + 3 or mp - 9
    local y = yoe + era * 400
    if m <= 2 then
        y = y + 1
    end
    return y, m, d
end

local month_days = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31}

-- "YYYY-MM-DD" -> day number, or nil for anything else (years 1900-2199, as epcsd).
local function parse_date(s)
    if type(s) ~= "string" or #s ~= 10 then
        return nil
    end
    local y, m, d = s:match("^(%d%d%d%d)%-(%d%d)%-(%d%d)$")
    if not y then
        return nil
    end
    y, m, d = tonumber(y), tonumber(m), tonumber(d)
    if y < 1900 or y > 2199 or m < 1 or m > 12 or d < 1 then
        return nil
    end
    local leap = (y % 4 == 0 and y % 100 ~= 0) or y % 400 == 0
    if d > (m == 2 and leap and 29 or month_days[m]) then
        return nil
    end
    return days_from_civil(y, m, d)
end

local function fmt(day)
    return format("%04d-%02d-%02d", civil_from_days(day))
end

-- Today in Seoul (UTC+9, no DST), epcsd's default `date`.
local function today_seoul()
    return floor((ngx.time() + 9 * 3600) / 86400)
end

-- lua_rules/elections.lua, days as day numbers.
local elections = {}
for _, e in ipairs {
    {id = "byel2021", kind = "by_election", day = "2021-04-07"},
    {id = "pres20", kind = "general", day = "2022-03-09"},
    {id = "local8", kind = "general", day = "2022-06-01"},
    {id = "na22", kind = "general", day = "2024-04-10"},
    {id = "ganghwa2024", kind = "by_election", day = "2024-10-16"},
    {id = "pres21", kind = "vacancy", day = "2025-06-03", cause_confirmed = "2025-04-04"},
    {id = "local9", kind = "general", day = "2026-06-03"},
    {id = "na23", kind = "general", day = "2028-04-12"},
} do
    elections[e.id] = {
        id = e.id,
        kind = e.kind,
        day = parse_date(e.day),
        cause_confirmed = e.cause_confirmed and parse_date(e.cause_confirmed),
    }
end

-- The one version of Art. 82-8.
local RULE_ID = "deepfake/82-8/2024-01-29"
local EFFECTIVE_FROM = "2024-01-29"
local EFFECTIVE_DAY = parse_date(EFFECTIVE_FROM)

-- D-90 to D-0; a by-/vacancy election's window starts no earlier than its confirmation.
local function campaign_window(election)
    local from, to = election.day - 90, election.day
    if election.cause_confirmed and from < election.cause_confirmed then
        from = election.cause_confirmed
    end
    return from, to
end

local PENALTY_IN_WINDOW =
    "Art. 255(5): imprisonment of up to 7 years or a fine of KRW 10 million to 50 million"
local PENALTY_UNLABELED = "Art. 261(3)4: administrative fine of up to KRW 10 million"
local LABEL = "Label the video as AI-made (Art. 82-8(2))."

local function evaluate(q)
    local a = q.activity
    if a.deepfake == nil or a.purpose == nil then
        local missing = {}
        if a.deepfake == nil then
            missing[#missing + 1] = "activity.deepfake"
        end
        if a.purpose == nil then
            missing[#missing + 1] = "activity.purpose"
        end
        return {
            verdict = "needs_facts",
            article = "82-8",
            missing = missing,
            reason = "Whether the video is an AI deepfake and what it is for decide Art. 82-8.",
            reason_ko = "딥페이크 영상 여부와 그 목적을 알아야 제82조의8을 적용할 수 있습니다.",
        }
    end
    if not a.deepfake then
        return {
            verdict = "allowed",
            article = "82-8",
            exception = "not_ai_generated",
            reason = "A video not made with AI (e.g. edited by hand) is not a deepfake under Art. 82-8.",
            reason_ko = "인공지능 기술로 만들지 않은 영상(수작업 편집 등)은 제82조의8의 딥페이크 영상이 아닙니다.",
        }
    end
    if a.purpose ~= "campaign" then
        return {
            verdict = "allowed",
            article = "82-8",
            exception = "not_campaigning",
            reason = format(
                "A deepfake made for '%s' is not election campaigning, so Art. 82-8 does not restrict it.",
                a.purpose),
            reason_ko = "선거운동 목적이 아닌 딥페이크 영상은 제82조의8의 제한 대상이 아닙니다.",
        }
    end
    local from, to = campaign_window(q.election)
    local window = {from = from, to = to}
    if q.date >= from and q.date <= to then
        return {
            verdict = "prohibited",
            article = "82-8(1)",
            window = window,
            penalty = PENALTY_IN_WINDOW,
            reason = format(
                "Deepfake videos for campaigning are prohibited from %s (D-90) to election day %s, labeled or not.",
                fmt(from), fmt(to)),
            reason_ko = format(
                "선거일 전 90일(%s)부터 선거일(%s)까지는 표시 여부와 관계없이 선거운동을 위한 딥페이크 영상을 제작·편집·배포·상영·게시할 수 없습니다.",
                fmt(from), fmt(to)),
        }
    end
    if a.labeled == nil then
        return {
            verdict = "needs_facts",
            article = "82-8(2)",
            window = window,
            missing = {"activity.labeled"},
            reason = "Outside the D-90 window a campaign deepfake is allowed only when labeled as AI-made.",
            reason_ko = "선거일 전 90일 전에는 인공지능 기술로 만든 가상의 정보임을 표시한 경우에만 허용됩니다.",
        }
    end
    if a.labeled then
        return {
            verdict = "allowed",
            article = "82-8(2)",
            window = window,
            exception = "labeled_outside_window",
            obligations = {LABEL},
            reason = format(
                "Outside %s..%s a campaign deepfake is allowed when labeled as AI-made, as this one is.",
                fmt(from), fmt(to)),
            reason_ko = "선거일 전 90일 전에는 인공지능 기술로 만든 가상의 정보임을 표시하면 허용됩니다.",
        }
    end
    return {
        verdict = "prohibited",
        article = "82-8(2)",
        window = window,
        obligations = {LABEL},
        penalty = PENALTY_UNLABELED,
        reason = format(
            "Outside %s..%s a campaign deepfake must be labeled as AI-made; this one is not.",
            fmt(from), fmt(to)),
        reason_ko = "인공지능 기술로 만든 가상의 정보임을 표시하지 않은 딥페이크 영상은 허용되지 않습니다.",
    }
end

local function not_in_force(q)
    local verdict = {
        verdict = "allowed",
        article = "82-8",
        exception = "not_in_force",
        reason = format("Art. 82-8 is in force from %s; this act on %s precedes it.",
            EFFECTIVE_FROM, fmt(q.date)),
        reason_ko = format("제82조의8은 %s부터 시행되므로 %s의 행위에는 적용되지 않습니다.",
            EFFECTIVE_FROM, fmt(q.date)),
    }
    local a = q.activity
    if a.deepfake and a.purpose == "campaign" and a.labeled ~= true then
        verdict.obligations = {
            "From " .. EFFECTIVE_FROM .. " the video must be labeled as AI-made, and inside " ..
            "the D-90 window it may not be posted at all (Art. 82-8).",
        }
    end
    return verdict
end

-- The deepfake plugin's fact vocabulary (plugins/deepfake/deepfake.c and docs/api.md).
local function enum(list)
    local set = {}
    for _, v in ipairs(list) do
        set[v] = true
    end
    return set
end

local actor_facts = {
    kind = enum {"voter", "party_member", "candidate", "prospective_candidate", "na_member",
        "local_council_member", "local_government_head", "public_official", "journalist",
        "gov_invested_org_executive", "local_public_corp_executive", "reserve_force_commander",
        "residents_committee_member", "tong_ri_ban_head", "publisher", "author", "business",
        "media_company", "platform", "other"},
}
local activity_facts = {
    kind = enum {"produce", "edit", "distribute", "screen", "post"},
    deepfake = "boolean",
    purpose = enum {"campaign", "primary", "get_out_the_vote", "legislative_report", "satire",
        "other"},
    labeled = "boolean",
}
local top_level = enum {"election", "area", "date", "actor", "activity"}

-- Raised with {status, error, message, field} and answered as an error map.
local function refuse(status, code, field, message)
    error({status = status, error = code, field = field, message = message}, 0)
end

local function check_facts(group, facts, spec)
    if facts == nil then
        return {}
    end
    if type(facts) ~= "table" then
        refuse(400, "bad_request", group, group .. " must be a map")
    end
    for name, value in pairs(facts) do
        local want, path = spec[name], group .. "." .. name
        if want == nil then
            refuse(422, "invalid_fact", path, path .. ": unknown fact")
        elseif want == "boolean" then
            if type(value) ~= "boolean" then
                refuse(422, "invalid_fact", path, path .. ": must be a boolean")
            end
        elseif type(value) ~= "string" or not want[value] then
            refuse(422, "invalid_fact", path, path .. ": unknown value '" .. tostring(value) .. "'")
        end
    end
    return facts
end

-- The request map -> q as lua_rules see it (dates as day numbers).
local function query(body)
    if type(body) ~= "table" then
        refuse(400, "bad_request", nil, "a check is a map")
    end
    for name in pairs(body) do
        if not top_level[name] then
            refuse(400, "bad_request", name, "unknown field '" .. name .. "'")
        end
    end
    if type(body.election) ~= "string" then
        refuse(400, "bad_request", "election", "election must be a string")
    end
    local election = elections[body.election]
    if election == nil then
        refuse(404, "unknown_election", "election", "no election '" .. body.election .. "'")
    end
    if body.area ~= nil and body.area ~= "deepfake" then
        refuse(404, "unknown_area", "area", "the peer knows only the deepfake area")
    end
    local date = today_seoul()
    if body.date ~= nil then
        date = parse_date(body.date)
        if date == nil then
            refuse(422, "invalid_fact", "date", "date must be a date 'YYYY-MM-DD'")
        end
    end
    local actor = check_facts("actor", body.actor, actor_facts)
    local activity = check_facts("activity", body.activity, activity_facts)
    if activity.kind == nil then
        refuse(422, "invalid_fact", "activity.kind", "activity.kind is required here")
    end
    return {date = date, election = election, actor = actor, activity = activity}
end

local VERDICT_KEYS = {"verdict", "area", "article", "rule", "reason", "reason_ko", "window",
    "exception", "obligations", "missing", "penalty", "election", "ruleset"}
local WINDOW_KEYS = {"from", "to"}
local ELECTION_KEYS = {"id", "day"}
local ERROR_KEYS = {"error", "message", "field"}

-- What epcsd's host adds around a rule's verdict: area, rule id (and /not-in-force), the
-- version's window when the verdict has none, election and ruleset; same field order.
local function decide(q)
    local verdict, rule
    if q.date >= EFFECTIVE_DAY then
        verdict, rule = evaluate(q), RULE_ID
    else
        verdict, rule = not_in_force(q), RULE_ID .. "/not-in-force"
    end
    local window = verdict.window
    if window == nil then
        local from, to = campaign_window(q.election)
        window = {from = from, to = to}
    end
    verdict.area = "deepfake"
    verdict.rule = rule
    verdict.window = msgpack.omap(WINDOW_KEYS, {from = fmt(window.from), to = fmt(window.to)})
    verdict.election = msgpack.omap(ELECTION_KEYS, {id = q.election.id, day = fmt(q.election.day)})
    verdict.ruleset = RULESET
    return msgpack.omap(VERDICT_KEYS, verdict)
end

local function answer(status, value)
    local body = msgpack.encode(value)
    ngx.status = status
    ngx.header["content-type"] = "application/msgpack"
    ngx.header["content-length"] = #body
    ngx.print(body)
end

--- The content handler: POST a msgpack check, get the verdict map in msgpack.
function M.handle()
    if ngx.req.get_method() ~= "POST" then
        ngx.header["allow"] = "POST"
        return answer(405, msgpack.omap(ERROR_KEYS, {error = "method_not_allowed",
            message = "POST only"}))
    end
    ngx.req.read_body()
    local body = ngx.req.get_body_data()
    if body == nil then
        return answer(400, msgpack.omap(ERROR_KEYS, {error = "bad_request",
            message = "empty body"}))
    end
    local ok, result = pcall(function()
        local decoded_ok, decoded = pcall(msgpack.decode, body)
        if not decoded_ok then
            refuse(400, "bad_request", nil, tostring(decoded))
        end
        return decide(query(decoded))
    end)
    if ok then
        return answer(200, result)
    end
    if type(result) == "table" then
        return answer(result.status, msgpack.omap(ERROR_KEYS, result))
    end
    -- A bug in this file: fail closed, as epcsd does with a failing rule.
    ngx.log(ngx.ERR, result)
    return answer(500, msgpack.omap(ERROR_KEYS, {error = "rule_failed",
        message = tostring(result)}))
end

return M
