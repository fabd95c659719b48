-- A minimal msgpack codec in plain Lua 5.1/LuaJIT for the bench peer: Debian 12 packages no
-- msgpack module for LuaJIT (`apt-cache search msgpack lua` finds none), and the peer has to
-- speak the same wire format as epcsd for the comparison to be fair.
--
-- Decodes nil, booleans, every integer width, strings (fixstr/str8/16/32), bin, arrays and maps
-- with string keys; refuses floats and ext types (no check fact is a float), duplicate map keys,
-- non-string keys, nesting deeper than 32 and trailing bytes: the refusals epcsd makes too, bar
-- UTF-8 validation, which the peer skips. Encodes strings, booleans, integers, arrays and maps
-- whose key order is given (epcsd's verdict map has a fixed field order).

local byte, sub, char, concat = string.byte, string.sub, string.char, table.concat
local floor, type, error, setmetatable, getmetatable = math.floor, type, error, setmetatable,
    getmetatable

local M = {}

local MAX_DEPTH = 32

-- Errors carry this prefix so the handler can tell a malformed body from a bug.
local function bad(msg)
    error("msgpack: " .. msg, 0)
end

local decode_at

local function need(s, pos, n)
    if pos + n - 1 > #s then
        bad("truncated")
    end
end

local function uint(s, pos, n)
    need(s, pos, n)
    local v = 0
    for i = pos, pos + n - 1 do
        v = v * 256 + byte(s, i)
    end
    return v
end

local function int(s, pos, n)
    local v = uint(s, pos, n)
    local half = 2 ^ (8 * n - 1)
    if v >= half then
        v = v - 2 * half
    end
    return v
end

local function str(s, pos, n)
    need(s, pos, n)
    return sub(s, pos, pos + n - 1), pos + n
end

local function array(s, pos, n, depth)
    if n > #s - pos + 1 then
        bad("array count beyond the body")
    end
    local t = {}
    for i = 1, n do
        t[i], pos = decode_at(s, pos, depth + 1)
    end
    return t, pos
end

local function map(s, pos, n, depth)
    if 2 * n > #s - pos + 1 then
        bad("map count beyond the body")
    end
    local t = {}
    for _ = 1, n do
        local k, v
        k, pos = decode_at(s, pos, depth + 1)
        if type(k) ~= "string" then
            bad("map key is not a string")
        end
        v, pos = decode_at(s, pos, depth + 1)
        if t[k] ~= nil then
            bad("duplicate key '" .. k .. "'")
        end
        -- msgpack nil as a value leaves the key absent, as a missing fact.
        t[k] = v
    end
    return t, pos
end

decode_at = function(s, pos, depth)
    if depth > MAX_DEPTH then
        bad("nesting deeper than 32")
    end
    local b = byte(s, pos)
    if b == nil then
        bad("truncated")
    end
    pos = pos + 1
    if b <= 0x7f then
        return b, pos
    elseif b >= 0xe0 then
        return b - 256, pos
    elseif b >= 0xa0 and b <= 0xbf then
        return str(s, pos, b - 0xa0)
    elseif b >= 0x80 and b <= 0x8f then
        return map(s, pos, b - 0x80, depth)
    elseif b >= 0x90 and b <= 0x9f then
        return array(s, pos, b - 0x90, depth)
    elseif b == 0xc0 then
        return nil, pos
    elseif b == 0xc2 then
        return false, pos
    elseif b == 0xc3 then
        return true, pos
    elseif b == 0xcc then
        return uint(s, pos, 1), pos + 1
    elseif b == 0xcd then
        return uint(s, pos, 2), pos + 2
    elseif b == 0xce then
        return uint(s, pos, 4), pos + 4
    elseif b == 0xcf then
        return uint(s, pos, 8), pos + 8
    elseif b == 0xd0 then
        return int(s, pos, 1), pos + 1
    elseif b == 0xd1 then
        return int(s, pos, 2), pos + 2
    elseif b == 0xd2 then
        return int(s, pos, 4), pos + 4
    elseif b == 0xd3 then
        return int(s, pos, 8), pos + 8
    elseif b == 0xd9 or b == 0xc4 then
        return str(s, pos + 1, uint(s, pos, 1))
    elseif b == 0xda or b == 0xc5 then
        return str(s, pos + 2, uint(s, pos, 2))
    elseif b == 0xdb or b == 0xc6 then
        return str(s, pos + 4, uint(s, pos, 4))
    elseif b == 0xdc then
        return array(s, pos + 2, uint(s, pos, 2), depth)
    elseif b == 0xdd then
        return array(s, pos + 4, uint(s, pos, 4), depth)
    elseif b == 0xde then
        return map(s, pos + 2, uint(s, pos, 2), depth)
    elseif b == 0xdf then
        return map(s, pos + 4, uint(s, pos, 4), depth)
    end
    bad(string.format("unsupported type byte 0x%02x", b))
end

--- Decodes one msgpack value that must fill `s` exactly; raises "msgpack: ..." otherwise.
function M.decode(s)
    local v, pos = decode_at(s, 1, 1)
    if pos <= #s then
        bad("trailing bytes")
    end
    return v
end

-- A map with a fixed key order: msgpack.omap({"a", "b"}, {a = 1, b = 2}); absent values are
-- left out, as epcsd leaves out optional verdict fields.
local OMap = {}

function M.omap(keys, values)
    return setmetatable({keys = keys, values = values}, OMap)
end

local encode

local function be(v, n)
    local bytes = {}
    for i = n, 1, -1 do
        bytes[i] = v % 256
        v = floor(v / 256)
    end
    return char(unpack(bytes))
end

local function put_str(out, s)
    local n = #s
    if n < 32 then
        out[#out + 1] = char(0xa0 + n)
    elseif n < 0x100 then
        out[#out + 1] = char(0xd9, n)
    elseif n < 0x10000 then
        out[#out + 1] = char(0xda) .. be(n, 2)
    else
        out[#out + 1] = char(0xdb) .. be(n, 4)
    end
    out[#out + 1] = s
end

local function put_header(out, n, fix, b16, b32)
    if n < 16 then
        out[#out + 1] = char(fix + n)
    elseif n < 0x10000 then
        out[#out + 1] = char(b16) .. be(n, 2)
    else
        out[#out + 1] = char(b32) .. be(n, 4)
    end
end

encode = function(out, v)
    local t = type(v)
    if t == "string" then
        put_str(out, v)
    elseif t == "boolean" then
        out[#out + 1] = v and "\195" or "\194"
    elseif t == "number" then
        if v ~= floor(v) then
            error("msgpack: floats are not encoded", 0)
        end
        if v >= 0 and v < 128 then
            out[#out + 1] = char(v)
        elseif v >= 0 then
            out[#out + 1] = char(0xcf) .. be(v, 8)
        elseif v >= -32 then
            out[#out + 1] = char(v + 256)
        elseif v >= -2 ^ 31 then
            out[#out + 1] = char(0xd2) .. be(v + 2 ^ 32, 4)
        else
            error("msgpack: integers below -2^31 are not encoded", 0)
        end
    elseif t == "table" and getmetatable(v) == OMap then
        local keys, values, n = v.keys, v.values, 0
        for i = 1, #keys do
            if values[keys[i]] ~= nil then
                n = n + 1
            end
        end
        put_header(out, n, 0x80, 0xde, 0xdf)
        for i = 1, #keys do
            local value = values[keys[i]]
            if value ~= nil then
                put_str(out, keys[i])
                encode(out, value)
            end
        end
    elseif t == "table" then
        put_header(out, #v, 0x90, 0xdc, 0xdd)
        for i = 1, #v do
            encode(out, v[i])
        end
    else
        error("msgpack: cannot encode a " .. t, 0)
    end
end

--- Encodes `v` (strings, booleans, integers, arrays, msgpack.omap maps) into one string.
function M.encode(v)
    local out = {}
    encode(out, v)
    return concat(out)
end

return M
