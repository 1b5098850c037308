-- wrk script for benches/tracker_load.sh: BEP 3 announces that cycle through the info hashes
-- given as arguments (already percent-encoded) and through 10,000 peers per wrk thread (peer_id
-- and port vary, so the swarm stays at a steady size instead of growing without end).
--   wrk ... -s benches/announce.lua URL -- "<credentials query or empty>" HASH1 HASH2 ...
local hashes = {}
local auth = ""
local n = 0
local thread_no = 0
local threads = 0

function setup(thread)
  thread:set("thread_no", threads)
  threads = threads + 1
end

function init(args)
  auth = args[1] or ""
  for i = 2, #args do hashes[#hashes + 1] = args[i] end
  if #hashes == 0 then error("announce.lua: give at least one percent-encoded info hash") end
end

function request()
  n = n + 1
  local peer = n % 10000
  local path = string.format(
    "/announce?info_hash=%s&peer_id=-WK0001-%02d%010d&port=%d&uploaded=0&downloaded=0&left=1048576&compact=1&numwant=50%s",
    hashes[(n % #hashes) + 1], thread_no, peer, 10000 + peer, auth)
  return wrk.format("GET", path)
end
