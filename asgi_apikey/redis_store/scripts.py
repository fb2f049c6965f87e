"""The Lua scripts that change the store: each change is one atomic step.

Every script changes the hashes, counts one more version and publishes the
change message together, so a follower never sees one without the other.
The epoch is a random token set by the first write after the store was
created (or flushed): a follower that sees another epoch reloads everything,
whatever the version says.

KEYS of every script: keys, ids, version, epoch (``Names.script_keys``).
ARGV: a new epoch (used if none is set), the channel, then the script's own.
"""

from __future__ import annotations

CHANGED = """
local function changed(op, digest)
  redis.call('SET', KEYS[4], ARGV[1], 'NX')
  local v = redis.call('INCR', KEYS[3])
  local epoch = redis.call('GET', KEYS[4])
  redis.call('PUBLISH', ARGV[2], cjson.encode({v = v, e = epoch, op = op, digest = digest}))
  return v
end
"""

#: ARGV: epoch, channel, digest, key_id, record. Answers {'ok', version},
#: {'same_key', the record held} or {'id_taken', the digest holding the key_id}.
ADD = (
    CHANGED
    + """
local present = redis.call('HGET', KEYS[1], ARGV[3])
if present then return {'same_key', present} end
local taken = redis.call('HGET', KEYS[2], ARGV[4])
if taken then return {'id_taken', taken} end
redis.call('HSET', KEYS[1], ARGV[3], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[4], ARGV[3])
return {'ok', tostring(changed('add', ARGV[3]))}
"""
)

#: ARGV: epoch, channel, digest (or ''), key_id (or ''). Answers the new version,
#: or 0 when the store does not hold the key.
REVOKE = (
    CHANGED
    + """
local digest = ARGV[3]
if digest == '' then
  digest = redis.call('HGET', KEYS[2], ARGV[4])
  if not digest then return 0 end
end
local record = redis.call('HGET', KEYS[1], digest)
if not record then return 0 end
redis.call('HDEL', KEYS[1], digest)
local ok, decoded = pcall(cjson.decode, record)
if ok and type(decoded) == 'table' and type(decoded['key_id']) == 'string' then
  if redis.call('HGET', KEYS[2], decoded['key_id']) == digest then
    redis.call('HDEL', KEYS[2], decoded['key_id'])
  end
end
return changed('revoke', digest)
"""
)
