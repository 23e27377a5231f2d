"""The Lua scripts of the Redis limit store: each one step, atomic in Redis.

Times are Redis's own (`TIME`), so gateways on machines whose clocks differ agree; GCRA
works in whole microseconds (exact in Lua's doubles), stream ownership in milliseconds.
"""

# KEYS[1] the key's TAT; ARGV: interval (us), burst, 1 to count a request (0: only read).
# Returns {admitted, microseconds the TAT is ahead of now}.
GCRA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
if ARGV[3] == '0' then return {1, tat - now} end
local after = tat + interval
if after - now > interval * tonumber(ARGV[2]) then return {0, tat - now} end
redis.call('SET', KEYS[1], string.format('%d', after), 'PX',
           math.floor((after - now) / 1000) + 1000)
return {1, after - now}
"""

# KEYS[1] the key's streams (a hash: process -> count), KEYS[2] the processes alive (a
# sorted set: process -> when it is presumed dead, ms); ARGV: this process, the cap, the
# hash's lifetime (ms). Drops the counts of the dead; returns {opened, open now}.
OPEN_STREAM = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local fields = redis.call('HGETALL', KEYS[1])
local total = 0
for i = 1, #fields, 2 do
  local owner = fields[i]
  local alive = owner == ARGV[1]
  if not alive then
    local dies = redis.call('ZSCORE', KEYS[2], owner)
    alive = dies and tonumber(dies) > now
  end
  if alive then
    total = total + tonumber(fields[i + 1])
  else
    redis.call('HDEL', KEYS[1], owner)
  end
end
if total >= tonumber(ARGV[2]) then return {0, total} end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, total + 1}
"""

# KEYS[1] the key's streams; ARGV: this process, how many of its streams closed.
CLOSE_STREAMS = """
local left = redis.call('HINCRBY', KEYS[1], ARGV[1], -tonumber(ARGV[2]))
if left <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return left
"""

# KEYS[1] the processes alive, KEYS[2..] keys' streams; ARGV: this process, its lifetime
# (ms), then per key its count here and 1 if Redis may disagree with it. Counts are
# written when they may disagree, or when this process had been taken for dead (its own
# counts may be gone); returns 1 then.
HEARTBEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local fresh = redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
for i = 2, #KEYS do
  local count = tonumber(ARGV[2 * i - 1])
  if fresh == 1 or ARGV[2 * i] == '1' then
    if count > 0 then
      redis.call('HSET', KEYS[i], ARGV[1], count)
    else
      redis.call('HDEL', KEYS[i], ARGV[1])
    end
  end
  if count > 0 then redis.call('PEXPIRE', KEYS[i], ttl * 4) end
end
return fresh
"""

# KEYS[1] the processes alive, KEYS[2..] keys' streams: this process leaves.
LEAVE = """
redis.call('ZREM', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('HDEL', KEYS[i], ARGV[1]) end
return 1
"""

# KEYS[1] an upstream's cooldown; ARGV: ms until it ends, ms to keep it past its end.
COOL = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local left = math.max(0, tonumber(ARGV[1]))
redis.call('SET', KEYS[1], string.format('%d', now + left), 'PX', left + tonumber(ARGV[2]))
return 1
"""

# KEYS[1] an upstream's cooldown: it is healthy again.
CLEAR = "return redis.call('DEL', KEYS[1])"

# KEYS: upstreams' cooldowns; for each, ms until it ends (negative: ended), or nil.
READ_COOLDOWNS = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for i, key in ipairs(KEYS) do
  local ends = redis.call('GET', key)
  if ends then out[i] = tonumber(ends) - now else out[i] = false end
end
return out
"""
