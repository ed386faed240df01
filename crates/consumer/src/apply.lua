-- Apply one batch of one partition to the live counters, exactly once.
-- ARGV: prefix, topic, partition, last_offset, now_secs, then per vote:
--       offset, vote_id, band, album
-- The partition's last applied offset is stored in the same script, so a
-- replayed batch (consumer crash before the Kafka commit, rebalance) is
-- skipped; a vote_id seen before (client retry) is not counted again.
-- Returns {counted, duplicates, skipped_replayed}.
local p, topic, partition = ARGV[1], ARGV[2], ARGV[3]
local offsets = p .. 'offsets:' .. topic
local applied = tonumber(redis.call('HGET', offsets, partition) or '-1')
local last = tonumber(ARGV[4])
local now = ARGV[5]
local counted, dups, replayed = 0, 0, 0
for i = 6, #ARGV, 4 do
  local off = tonumber(ARGV[i])
  if off <= applied then
    replayed = replayed + 1
  elseif redis.call('SADD', p .. 'seen_votes', ARGV[i + 1]) == 1 then
    local band, album = ARGV[i + 2], ARGV[i + 3]
    redis.call('HINCRBY', p .. 'votos_banda', band, 1)
    redis.call('HINCRBY', p .. 'votos_album', album, 1)
    redis.call('ZINCRBY', p .. 'leaderboard:bands', 1, band)
    redis.call('ZINCRBY', p .. 'leaderboard:albums', 1, album)
    counted = counted + 1
  else
    dups = dups + 1
  end
end
if counted > 0 then
  redis.call('INCRBY', p .. 'votes:total', counted)
  local sec = p .. 'votes:sec:' .. now
  redis.call('INCRBY', sec, counted)
  redis.call('EXPIRE', sec, 3600)
end
if last > applied then
  redis.call('HSET', offsets, partition, last)
end
return {counted, dups, replayed}
