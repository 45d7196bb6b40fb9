-- Library (put in front of the label queue and job scripts that build keys, never run alone):
-- quote, the percent-encoding of keys.py.
--
-- Percent-encoding as keys.py does it (urllib.parse.quote with no safe characters), so that
-- the key built here for an id read from a sorted set is the key Python names for that id.
-- Byte ranges, not %w: Lua's character classes follow the server's locale.
local function quote(s)
  return (string.gsub(s, '[^A-Za-z0-9_%.~%-]', function(c)
    return string.format('%%%02X', string.byte(c))
  end))
end
