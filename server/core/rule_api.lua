-- The epcs rule API: the vocabulary every rule file in lua_rules/ is written in.
-- epcsd compiles this text into itself and runs it in every rule state before the rule files;
-- lua_rules/README.md documents it for rule authors. The host already put into the global
-- table `epcs` what it implements in C: epcs.date, epcs.parse_date, epcs.fmt and the verdict
-- constructors epcs.allowed, epcs.prohibited and epcs.needs_facts. Its own helpers, which rules
-- must not reach, come as this chunk's argument.

local host = ...
local epcs = epcs
local type, error, ipairs, pairs, setmetatable, getmetatable, tostring, select, rawget =
    type, error, ipairs, pairs, setmetatable, getmetatable, tostring, select, rawget
local format = string.format

local function fail(level, fmt, ...)
    error(format(fmt, ...), level + 1)
end

-- A class: its methods, and the metatable of its objects, which stays the API's own. Its
-- __metatable makes getmetatable(object) return the methods table, which identifies the class
-- and which the host freezes with the libraries (this chunk returns the classes), so a rule can
-- neither reach the metatable nor change a method for other rules.
local function class()
    local methods = {}
    return methods, {__index = methods, __metatable = methods}
end

-- A day relative to election day: D(90) is election day minus 90 days, D(0) election day.
local Relative, RelativeObject = class()

function epcs.D(n)
    if math.type(n) ~= "integer" or n < 0 then
        fail(2, "D(n) takes a whole number of days >= 0, got %s", tostring(n))
    end
    return setmetatable({days_before = n}, RelativeObject)
end

local function is_relative(value)
    return getmetatable(value) == Relative
end

local function day_of(value, field, level)
    if math.type(value) == "integer" then
        return value
    end
    local day = type(value) == "string" and epcs.parse_date(value)
    if day then
        return day
    end
    fail(level + 1, "%s must be a date 'YYYY-MM-DD', got '%s'", field, tostring(value))
end

-- A period "from D-N to D-M", both ends inclusive. With from_cause_confirmed = true the period
-- of a by-election or vacancy election starts no earlier than the day its cause was confirmed;
-- with starts_at_cause_confirmed = true it starts on that day, earlier or later than D-N, as
-- where the Act says "(보궐선거등에 있어서는 그 선거의 실시사유가 확정된 때)부터" (Art. 93(1)).
local Window, WindowObject = class()

function epcs.window(spec)
    if type(spec) ~= "table" or not is_relative(spec.from) or not is_relative(spec.to) then
        fail(2, "window{} needs from = D(n) and to = D(m)")
    end
    if spec.from.days_before < spec.to.days_before then
        fail(2, "window ends (D-%d) before it starts (D-%d)", spec.to.days_before,
            spec.from.days_before)
    end
    return setmetatable({
        from = spec.from,
        to = spec.to,
        from_cause_confirmed = spec.from_cause_confirmed == true,
        starts_at_cause_confirmed = spec.starts_at_cause_confirmed == true,
    }, WindowObject)
end

-- The first and last day of the window for an election (day numbers).
function Window:span(election)
    local from = election.day - self.from.days_before
    local to = election.day - self.to.days_before
    if self.starts_at_cause_confirmed and election.cause_confirmed then
        from = election.cause_confirmed
    elseif self.from_cause_confirmed and election.cause_confirmed and
        from < election.cause_confirmed then
        from = election.cause_confirmed
    end
    return from, to
end

function Window:contains(election, day)
    local from, to = self:span(election)
    return day >= from and day <= to
end

-- A last day: D-N, or for a by-election with after_cause_confirmed = k, confirmation + k days
-- when that comes later. With by_election = D(m), a by- or vacancy election's last day is D-m
-- instead (Art. 53(2)2's D-30 beside 53(1)'s D-90).
local Deadline, DeadlineObject = class()

function epcs.deadline(spec)
    if type(spec) ~= "table" or not is_relative(spec.last_day) then
        fail(2, "deadline{} needs last_day = D(n)")
    end
    if spec.after_cause_confirmed ~= nil and math.type(spec.after_cause_confirmed) ~= "integer" then
        fail(2, "deadline{} after_cause_confirmed must be a whole number of days")
    end
    if spec.by_election ~= nil and not is_relative(spec.by_election) then
        fail(2, "deadline{} by_election must be D(n)")
    end
    return setmetatable({
        last_day = spec.last_day,
        by_election = spec.by_election,
        after_cause_confirmed = spec.after_cause_confirmed,
    }, DeadlineObject)
end

function Deadline:day(election)
    local last = self.last_day
    if self.by_election and election.kind ~= "general" then
        last = self.by_election
    end
    local day = election.day - last.days_before
    if self.after_cause_confirmed and election.cause_confirmed then
        local from_cause = election.cause_confirmed + self.after_cause_confirmed
        if from_cause > day then
            day = from_cause
        end
    end
    return day
end

-- Which actor kinds an area's provisions bind, and, for each kind they leave out, the
-- provision that does so: a list of entries, one per group of activity kinds (`activities`;
-- omitted: every activity of the area). An entry either binds everyone (`everyone` = the
-- article saying "누구든지") or lists the kinds it `covers` and `left_out` statements
-- {kinds, article, reason, reason_ko}, with a `probe` {election, date, activity} the rule tests
-- run for every kind left out. The rule tests fail for any actor kind of the host that an entry
-- neither covers nor leaves out, so a kind added to the vocabulary cannot slip through an area.
local Coverage, CoverageObject = class()
local ACTOR_KINDS = {}
for _, kind in ipairs(host.actor_kinds) do
    ACTOR_KINDS[kind] = true
end

local function coverage_entry(entry, i, seen_activities)
    if type(entry) ~= "table" then
        fail(3, "coverage entry %d must be a table", i)
    end
    local activities = entry.activities or {"*"}
    for _, activity in ipairs(activities) do
        if seen_activities[activity] or (activity == "*" and next(seen_activities)) or
            seen_activities["*"] then
            fail(3, "coverage entry %d: activity '%s' is spoken of by an earlier entry", i, activity)
        end
        seen_activities[activity] = true
    end
    local kinds = {}
    local function claim(kind, as)
        if not ACTOR_KINDS[kind] then
            fail(4, "coverage entry %d: '%s' is no actor kind of SPEC section 5", i, tostring(kind))
        end
        if kinds[kind] then
            fail(4, "coverage entry %d: actor kind '%s' is listed twice", i, kind)
        end
        kinds[kind] = as
    end
    if entry.everyone ~= nil then
        if type(entry.everyone) ~= "string" or entry.covers or entry.left_out then
            fail(3, "coverage entry %d: everyone = the article binding anyone, alone", i)
        end
        return {activities = activities, everyone = entry.everyone, kinds = kinds}
    end
    for _, kind in ipairs(entry.covers or {}) do
        claim(kind, true)
    end
    for _, statement in ipairs(entry.left_out or {}) do
        if type(statement.kinds) ~= "table" or type(statement.article) ~= "string" or
            type(statement.reason) ~= "string" or type(statement.reason_ko) ~= "string" then
            fail(3, "coverage entry %d: a left_out statement needs kinds, article, reason and reason_ko", i)
        end
        local verdict = epcs.allowed {
            article = statement.article, exception = "actor_not_covered",
            reason = statement.reason, reason_ko = statement.reason_ko,
        }
        for _, kind in ipairs(statement.kinds) do
            claim(kind, {article = statement.article, verdict = verdict})
        end
    end
    local probe = entry.probe
    if entry.left_out and (type(probe) ~= "table" or type(probe.election) ~= "string" or
        type(probe.date) ~= "string" or type(probe.activity) ~= "table") then
        fail(3, "coverage entry %d: a probe {election, date, activity} runs the kinds left out", i)
    end
    return {activities = activities, kinds = kinds, probe = probe}
end

function epcs.coverage(entries)
    if type(entries) ~= "table" or #entries == 0 then
        fail(2, "epcs.coverage{} takes a list of entries")
    end
    local list, seen = {}, {}
    for i, entry in ipairs(entries) do
        list[i] = coverage_entry(entry, i, seen)
    end
    return setmetatable({entries = list}, CoverageObject)
end

local function coverage_for(coverage, activity)
    for _, entry in ipairs(coverage.entries) do
        for _, kind in ipairs(entry.activities) do
            if kind == activity or kind == "*" then
                return entry
            end
        end
    end
    return nil
end

-- The verdict for an actor kind the provisions leave out (allowed, actor_not_covered, the
-- provision that leaves it out), or nil when the actor is covered or not yet known.
function Coverage:left_out(q)
    local entry = coverage_for(self, q.activity.kind)
    local as = entry and q.actor.kind and entry.kinds[q.actor.kind]
    return type(as) == "table" and as.verdict or nil
end

-- The rule tests of a coverage statement: each kind left out is probed; a kind neither covered
-- nor left out fails by name.
local function coverage_cases(area, cases)
    for _, entry in ipairs(area.coverage.entries) do
        if entry.everyone then
            goto next_entry
        end
        local about = format("%s (activities %s)", area.name, table.concat(entry.activities, ", "))
        for _, kind in ipairs(host.actor_kinds) do
            local as = entry.kinds[kind]
            if as == nil then
                cases[#cases + 1] = {
                    name = format("coverage of %s: actor kind '%s'", about, kind),
                    generated = true,
                    fail = format("actor kind '%s' is neither covered nor left out by a provision: state which", kind),
                }
            elseif as ~= true then
                cases[#cases + 1] = {
                    name = format("coverage of %s: Art. %s leaves out '%s'", about, as.article, kind),
                    election = entry.probe.election,
                    date = entry.probe.date,
                    actor = {kind = kind},
                    activity = entry.probe.activity,
                    expect = {verdict = "allowed", article = as.article, exception = "actor_not_covered"},
                    generated = true,
                }
            end
        end
        ::next_entry::
    end
end

-- Parameters that are the commission's policy rather than the Act's: each a list of entries
-- {from, value, source}, in force for acts dated from `from` until the next entry's. `source`
-- names the document that sets it (or "commission practice, set by staff"). Entries are added,
-- never edited, so a decision replayed for an old act keeps its answer.
local Policy, PolicyObject = class()

function epcs.policy(spec)
    if type(spec) ~= "table" then
        fail(2, "epcs.policy{} takes a table of parameters")
    end
    local parameters = {}
    for name, entries in pairs(spec) do
        if type(name) ~= "string" or type(entries) ~= "table" or #entries == 0 then
            fail(2, "policy parameter '%s' needs a list of dated entries", tostring(name))
        end
        local list = {}
        for i, entry in ipairs(entries) do
            if type(entry) ~= "table" or entry.value == nil or type(entry.source) ~= "string" or
                entry.source == "" then
                fail(2, "policy %s[%d] needs from, value and source", name, i)
            end
            list[i] = {
                from = day_of(entry.from, format("policy %s[%d] from", name, i), 2),
                value = entry.value,
            }
            if i > 1 and list[i].from <= list[i - 1].from then
                fail(2, "policy %s[%d] must start after the entry before it", name, i)
            end
        end
        parameters[name] = list
    end
    return setmetatable({parameters = parameters}, PolicyObject)
end

local function policy_entries(policy, name)
    local list = policy.parameters[name]
    if list == nil then
        fail(3, "no policy parameter '%s'", tostring(name))
    end
    return list
end

-- The value of parameter `name` in force on `day` (a day number).
function Policy:value(name, day)
    local value
    for _, entry in ipairs(policy_entries(self, name)) do
        if entry.from > day then
            break
        end
        value = entry.value
    end
    if value == nil then
        fail(2, "policy %s has no entry in force on %s", name, epcs.fmt(day))
    end
    return value
end

-- The value of the latest entry: for what a rule file builds while it loads (a window).
function Policy:latest(name)
    local list = policy_entries(self, name)
    return list[#list].value
end

-- An article as Korean law cites it: "93(2)" -> "제93조제2항", "82-8" -> "제82조의8",
-- "52(1)5" -> "제52조제1항제5호".
function epcs.cite_ko(article)
    local main, branch, paragraph, item = article:match("^(%d+)%-?(%d*)%(?(%d*)%)?(%d*)$")
    if not main then
        return "제" .. article .. "조"
    end
    return "제" .. main .. "조" .. (branch ~= "" and "의" .. branch or "") ..
        (paragraph ~= "" and "제" .. paragraph .. "항" or "") ..
        (item ~= "" and "제" .. item .. "호" or "")
end

-- "activity.labeled" -> "activity", "labeled", split once per path: every evaluation asks.
-- The paths rules ask about are a few constants; a rule making up paths cannot grow the
-- cache beyond SPLIT_PATHS_MAX, past which paths are split every time.
local split_paths, split_count, SPLIT_PATHS_MAX = {}, 0, 256

local function split_path(path)
    local split = split_paths[path]
    if split == nil then
        local section, name = path:match("^(%a+)%.([%w_]+)$")
        split = {section or false, name}
        if split_count < SPLIT_PATHS_MAX then
            split_paths[path] = split
            split_count = split_count + 1
        end
    end
    return split[1], split[2]
end

-- The fact paths among the arguments that the query lacks ("activity.labeled"), or nil.
function epcs.missing(q, ...)
    local absent
    for i = 1, select("#", ...) do
        local path = select(i, ...)
        local section, name = split_path(path)
        local facts = section and q[section]
        if facts == nil or facts[name] == nil then
            absent = absent or {}
            absent[#absent + 1] = path
        end
    end
    return absent
end

-- Elections table (lua_rules/elections.lua).
local ELECTION_KINDS = {general = true, by_election = true, vacancy = true}
-- local_office is a nationwide local election (every local race at once); a by-election for one
-- local race names it.
local OFFICES = {
    president = true, national_assembly = true, local_office = true,
    local_government_head = true, local_council = true,
}

function epcs.elections(list)
    if type(list) ~= "table" then
        fail(2, "epcs.elections{} takes a list of elections")
    end
    local seen = {}
    for i, e in ipairs(list) do
        if type(e.id) ~= "string" or not e.id:match("^[%w_]+$") then
            fail(2, "election %d: id must be letters, digits and '_'", i)
        end
        if seen[e.id] then
            fail(2, "election %d: duplicate id '%s'", i, e.id)
        end
        seen[e.id] = true
        if type(e.name) ~= "string" or type(e.name_ko) ~= "string" then
            fail(2, "election '%s': name and name_ko are required", e.id)
        end
        if not ELECTION_KINDS[e.kind] then
            fail(2, "election '%s': kind must be general, by_election or vacancy", e.id)
        end
        if not OFFICES[e.office] then
            fail(2, "election '%s': office must be president, national_assembly, local_office, local_government_head or local_council", e.id)
        end
        if e.kind ~= "general" and e.cause_confirmed == nil then
            fail(2, "election '%s': a %s needs cause_confirmed, the day its cause was confirmed", e.id,
                e.kind == "vacancy" and "vacancy election" or "by-election")
        end
        e.day = day_of(e.day, "election '" .. e.id .. "' day", 2)
        if e.cause_confirmed ~= nil then
            e.cause_confirmed = day_of(e.cause_confirmed, "election '" .. e.id .. "' cause_confirmed", 2)
            if e.cause_confirmed > e.day then
                fail(2, "election '%s': cause confirmed after election day", e.id)
            end
        end
    end
    return list
end

-- Area definition (one per rule file). Versions are sorted by effective_from; the one in force
-- on the decisive date of an act decides.
function epcs.area(def)
    if type(def) ~= "table" or type(def.name) ~= "string" or type(def.article) ~= "string" then
        fail(2, "epcs.area{} needs name and article")
    end
    if type(def.versions) ~= "table" or #def.versions == 0 then
        fail(2, "area '%s' needs at least one entry in versions", def.name)
    end
    local ids = {}
    for i, v in ipairs(def.versions) do
        if type(v.id) ~= "string" or v.id == "" then
            fail(2, "area '%s' version %d needs an id", def.name, i)
        end
        if ids[v.id] then
            fail(2, "area '%s': duplicate version id '%s'", def.name, v.id)
        end
        ids[v.id] = true
        if type(v.evaluate) ~= "function" then
            fail(2, "version '%s' needs an evaluate function", v.id)
        end
        v.effective_day = day_of(v.effective_from, "version '" .. v.id .. "' effective_from", 2)
        if v.promulgated ~= nil then
            v.promulgated_day = day_of(v.promulgated, "version '" .. v.id .. "' promulgated", 2)
        end
        if i > 1 and v.effective_day <= def.versions[i - 1].effective_day then
            fail(2, "area '%s': versions must be listed by increasing effective_from", def.name)
        end
        if getmetatable(v.window) ~= Window and getmetatable(v.deadline) ~= Deadline then
            fail(2, "version '%s' needs a window = epcs.window{} or deadline = epcs.deadline{}", v.id)
        end
    end
    if getmetatable(def.coverage) ~= Coverage then
        fail(2, "area '%s' needs coverage = epcs.coverage{...}: which actor kinds it binds, and the provision leaving out each other kind", def.name)
    end
    for i, t in ipairs(def.tests or {}) do
        if type(t) ~= "table" or type(t.name) ~= "string" or type(t.election) ~= "string" or
            type(t.date) ~= "string" or type(t.expect) ~= "table" then
            fail(2, "area '%s' test %d needs name, election, date and expect", def.name, i)
        end
    end
    for _, v in ipairs(def.versions) do
        local p = v.probe
        local function expectation(e)
            return type(e) == "table" or type(e) == "function"
        end
        if p ~= nil and (type(p) ~= "table" or not expectation(p.inside) or
            not expectation(p.outside)) then
            fail(2, "version '%s': probe needs inside and outside, each {...} or function(election)", v.id)
        end
    end
    if def.decisive_date ~= nil and type(def.decisive_date) ~= "function" then
        fail(2, "area '%s': decisive_date must be a function", def.name)
    end
    if def.not_in_force ~= nil and type(def.not_in_force) ~= "function" then
        fail(2, "area '%s': not_in_force must be a function", def.name)
    end
    return def
end

local function version_in_force(area, day)
    local versions = area.versions
    for i = #versions, 1, -1 do
        if versions[i].effective_day <= day then
            return versions[i]
        end
    end
    return nil
end

local function default_not_in_force(area, first)
    return function(q)
        return epcs.allowed {
            article = area.article,
            reason = format("Art. %s is not in force before %s.", area.article, first.effective_from),
            reason_ko = format("%s는 %s부터 시행됩니다.", epcs.cite_ko(area.article),
                first.effective_from),
        }
    end
end

-- Every loaded area by name, handed over by the host once all rule files have loaded; until
-- then nil, so a file cannot reach another area while it loads.
local areas

function epcs._link_areas(list)
    if areas ~= nil then
        fail(2, "the areas are linked once, by the host")
    end
    areas = list
end

local function linked(name, caller)
    if areas == nil then
        fail(3, "%s('%s') runs while evaluating, not while rule files load", caller, tostring(name))
    end
    local area = areas[name]
    if area == nil then
        fail(3, "%s: no area '%s' is loaded (its plugin is missing)", caller, tostring(name))
    end
    return area
end

-- The verdict another loaded area's rules give for the same query, and the id of the version
-- that gave it: an area that applies another's provision asks it instead of copying its rules,
-- so the two cannot drift apart.
-- The other area's plugin checks the request's facts first, as it would had the request asked
-- it: facts it refuses are the client's 422, whichever area asked. The asking rule gets its own
-- copy of the verdict, with the version's window or deadline filled in as the host fills it in
-- for verdicts it sends.
function epcs.decide(name, q)
    local area = linked(name, "epcs.decide")
    host.validate(name)
    local result, rule, from, to, deadline = epcs._evaluate(area, q)
    return host.own_verdict(result, from, to, deadline), rule
end

-- The calendar items another loaded area lists for an election, for the same reason.
function epcs.calendar_of(name, election)
    return epcs._calendar(linked(name, "epcs.calendar_of"), election)
end

-- Called by the host for every evaluation: returns the verdict, the id of the version that made
-- it and, when the verdict has neither window nor deadline, the version's window (from, to) or
-- deadline (nil, nil, day) for the host to add. Nothing the rules handed over is changed: a
-- verdict may be a constant of the rule file, shared by every evaluation.
function epcs._evaluate(area, q)
    local decisive = area.decisive_date and area.decisive_date(q) or q.date
    local version = version_in_force(area, decisive)
    local result
    if version then
        result = version.evaluate(q, version)
    else
        version = area.versions[1]
        local handler = area.not_in_force or default_not_in_force(area, version)
        result = handler(q, version)
    end
    if type(result) ~= "table" then
        error(format("version '%s' returned %s instead of a verdict", version.id, type(result)), 0)
    end
    local rule = version.id
    if version.effective_day > decisive then
        rule = rule .. "/not-in-force"
    end
    if rawget(result, "window") ~= nil or rawget(result, "deadline") ~= nil then
        return result, rule
    end
    if version.window then
        local from, to = version.window:span(q.election)
        return result, rule, from, to
    end
    return result, rule, nil, nil, version.deadline:day(q.election)
end

-- Called by the host for an election's calendar: the window or deadline of the version in force
-- on election day, or a version's own calendar(election) list when it has several.
function epcs._calendar(area, election)
    local version = version_in_force(area, election.day)
    if version == nil then
        return {}
    end
    if version.calendar then
        return version.calendar(election, version)
    end
    local item = {
        article = version.article or area.article,
        rule = version.id,
        title = version.title or area.title or ("Art. " .. area.article),
        title_ko = version.title_ko or area.title_ko,
    }
    if version.window then
        item.from, item.to = version.window:span(election)
    else
        item.day = version.deadline:day(election)
    end
    return {item}
end

-- Called by the rule test runner: the area's own tests, then the boundary days of every
-- version's probe for every election, derived from the version's window or deadline.
function epcs._test_cases(area, elections)
    local cases = {}
    for _, t in ipairs(area.tests or {}) do
        cases[#cases + 1] = t
    end
    coverage_cases(area, cases)
    for _, version in ipairs(area.versions) do
        local probe = version.probe
        for _, election in ipairs(probe and elections or {}) do
            if probe.when and not probe.when(election) then
                goto next_election
            end
            local days
            if version.window then
                local from, to = version.window:span(election)
                days = {
                    {from - 1, "outside", "day before the window"},
                    {from, "inside", "first day of the window"},
                    {to, "inside", "last day of the window"},
                    {to + 1, "outside", "day after the window"},
                }
            else
                local last = version.deadline:day(election)
                days = {
                    {last - 1, "inside", "day before the deadline"},
                    {last, "inside", "the deadline"},
                    {last + 1, "outside", "day after the deadline"},
                }
            end
            for _, entry in ipairs(days) do
                local day, side, label = entry[1], entry[2], entry[3]
                if version_in_force(area, day) == version then
                    local activity = probe.activity
                    if type(activity) == "function" then
                        activity = activity(day)
                    end
                    cases[#cases + 1] = {
                        name = format("probe %s, %s %s (%s)", version.id, election.id,
                            epcs.fmt(day), label),
                        election = election.id,
                        date = epcs.fmt(day),
                        actor = probe.actor,
                        activity = activity,
                        expect = type(probe[side]) == "function" and probe[side](election)
                            or probe[side],
                        generated = true,
                    }
                end
            end
            ::next_election::
        end
    end
    return cases
end

-- What the host freezes besides the libraries and `epcs`: the classes' methods.
return {Relative, Window, Deadline, Coverage, Policy}
