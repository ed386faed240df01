-- Apply one batch of one partition to the live counters, exactly once.
-- ARGV: prefix, topic, partition, last_offset, now_secs, first_offset,
--       log_nonempty ('1' when the vote log held votes before this batch),
--       expected_applied ('' or the applied offset the consumer judged the
--       batch's per-voter caps against: any other value refuses, STALE),
--       then per vote: offset, band, album, contest ('' = none), voter
--       ('' = none), status ('counted', 'over_limit', 'late', ...; '' = no
--       contest: counted), vote_id, replaces ('' = not a replace contest,
--       '-' = the voter's first counted vote, else the counted vote it
--       replaces as 'vote_id\tband\talbum': its counts are taken back)
-- The partition's last applied offset is stored in the same script, so a
-- replayed batch (consumer crash before the Kafka commit, rebalance) is
-- skipped. Client retries (the same vote id in another record) never reach
-- this script: MongoDB's _id found them (vote_log.rs, Stored::repeats).
-- Key names: keys.rs (a unit test checks this script spells them).
-- `applied` advances with every counted offset, so an offset that appears
-- twice in one batch (a seek back refetched it) is counted once.
-- Nothing is stored per vote (per voter: one hash field per contest voter).
-- Returns {counted, skipped_replayed}.
local p, topic, partition = ARGV[1], ARGV[2], ARGV[3]
-- A rebuild from MongoDB is replacing the counters: refuse; the consumer
-- retries the batch after it (counters.rs, Counters::begin_rebuild).
if redis.call('EXISTS', p .. 'rebuilding') == 1 then
  return redis.error_reply('REBUILDING counters are being rebuilt from MongoDB')
end
local offsets = p .. 'offsets:' .. topic
-- Redis lost its data (flushed, restarted empty) while the log has votes:
-- counting from zero would lose them for good. The consumer rebuilds first.
if ARGV[7] == '1' and redis.call('EXISTS', offsets) == 0 then
  return redis.error_reply('NOSTATE no applied offsets but the vote log is not empty: rebuild from MongoDB')
end
local stored_raw = redis.call('HGET', offsets, partition)
local stored = tonumber(stored_raw or '-1')
local applied = stored
-- Redis went back in time (restored, a replica promoted): the records after
-- its applied offset were never counted here. The consumer seeks back.
if stored_raw and tonumber(ARGV[6]) > stored + 1 then
  return redis.error_reply('GAP ' .. stored)
end
-- The consumer judged the per-voter caps against the counters as of its
-- read of `expected_applied`; another applier moved them since: judge again.
if ARGV[8] ~= '' and tonumber(ARGV[8]) ~= stored then
  return redis.error_reply('STALE ' .. stored)
end
local last = tonumber(ARGV[4])
local now = ARGV[5]
local counted, replayed = 0, 0
local uncounted = 0
for i = 9, #ARGV, 8 do
  local off = tonumber(ARGV[i])
  if off <= applied then
    replayed = replayed + 1
  else
    local band, album, contest, voter, status = ARGV[i + 1], ARGV[i + 2], ARGV[i + 3], ARGV[i + 4], ARGV[i + 5]
    local vote_id, replaces = ARGV[i + 6], ARGV[i + 7]
    local counts = status == '' or status == 'counted'
    if counts then
      redis.call('HINCRBY', p .. 'votos_banda', band, 1)
      redis.call('HINCRBY', p .. 'votos_album', album, 1)
      redis.call('ZINCRBY', p .. 'leaderboard:bands', 1, band)
      redis.call('ZINCRBY', p .. 'leaderboard:albums', 1, album)
      counted = counted + 1
    end
    if contest ~= '' then
      local c = p .. 'contest:' .. contest .. ':'
      redis.call('HINCRBY', c .. 'status', status, 1)
      if counts then
        redis.call('HINCRBY', c .. 'bands', band, 1)
        redis.call('ZINCRBY', c .. 'board', 1, band)
        redis.call('INCR', c .. 'total')
        if voter ~= '' then redis.call('HINCRBY', c .. 'voters', voter, 1) end
        if replaces ~= '' then
          if replaces ~= '-' then
            local old_band, old_album = string.match(replaces, '^[^\t]*\t([^\t]*)\t(.*)$')
            redis.call('HINCRBY', p .. 'votos_banda', old_band, -1)
            redis.call('HINCRBY', p .. 'votos_album', old_album, -1)
            redis.call('ZINCRBY', p .. 'leaderboard:bands', -1, old_band)
            redis.call('ZINCRBY', p .. 'leaderboard:albums', -1, old_album)
            uncounted = uncounted + 1
            redis.call('HINCRBY', c .. 'bands', old_band, -1)
            redis.call('ZINCRBY', c .. 'board', -1, old_band)
            redis.call('INCRBY', c .. 'total', -1)
            redis.call('HINCRBY', c .. 'voters', voter, -1)
            redis.call('HINCRBY', c .. 'status', 'counted', -1)
            redis.call('HINCRBY', c .. 'status', 'replaced', 1)
          end
          redis.call('HSET', c .. 'choice', voter, vote_id .. '\t' .. band .. '\t' .. album)
        end
      end
    end
    applied = off
  end
end
if counted - uncounted ~= 0 then
  redis.call('INCRBY', p .. 'votes:total', counted - uncounted)
end
if counted > 0 then
  local sec = p .. 'votes:sec:' .. now
  redis.call('INCRBY', sec, counted)
  redis.call('EXPIRE', sec, 3600)
end
if last > stored then
  redis.call('HSET', offsets, partition, last)
end
return {counted, replayed}
