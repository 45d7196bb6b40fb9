-- RedisShapes.register: give a shape of the compact encoding its id, or find the one it has.
--
-- KEYS: the model's shapes hash. ARGV: the shape (its keys as a JSON array), the most shapes a
-- model may have. Returns the shape's id, or 0 when the model has that many already.
--
-- The race this prevents: two replicas meet a new shape at once. Were reading the highest id
-- and writing the next one two steps, both could take id 5, one for each of two different
-- shapes, and a row written by one would be read with the other's keys; or one shape could get
-- two ids. In one script a shape gets exactly one id and an id exactly one shape, for good
-- (nothing ever changes or deletes an entry).
local id = redis.call('HGET', KEYS[1], ARGV[1])
if id then
  return tonumber(id)
end
local top = tonumber(redis.call('HGET', KEYS[1], '#') or '0')
if top >= tonumber(ARGV[2]) then
  return 0
end
top = top + 1
local text = string.format('%d', top)
redis.call('HSET', KEYS[1], '#', text, ARGV[1], text, text, ARGV[1])
return top
