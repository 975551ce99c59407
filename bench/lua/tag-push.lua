-- wrk script: PUT the same manifest under BENCH_TAGS distinct tags, then end the run.
--
-- Environment: BENCH_TAGS (total tags, a multiple of the thread count), BENCH_THREADS,
-- BENCH_REPO, BENCH_MANIFEST (path of the manifest file), BENCH_MANIFEST_TYPE, BENCH_DONE
-- (a scratch file, absent at start), BENCH_TAG_OFFSET (optional, added to every tag number).
--
-- Thread k pushes tags t<offset+k*per> .. t<offset+k*per+per-1> (zero-padded to 6
-- digits). Once a thread has sent all its PUTs, its connections send GET /v2/ (answered 200,
-- never 201) until every PUT has been answered, so no extra tag is created and no PUT is cut
-- off. wrk calls request() once on thread 0 right after init() only to check the request's
-- syntax; that call gets the filler too, so no tag is skipped.
--
-- wrk's main thread sleeps for the whole -d even after every thread has stopped, so the
-- script times the PUTs itself (LuaJIT ffi, CLOCK_MONOTONIC: first PUT sent to last PUT
-- answered, over all threads) and the last thread to finish sends SIGINT to wrk, which ends
-- the run at once. done() prints one line:
--   BENCH elapsed_us=.. puts=.. put_errors=.. first_error=..

local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *ts);
int getpid(void);
int kill(int pid, int sig);
]]
local CLOCK_MONOTONIC, SIGINT = 1, 2

local function now_us()
  local ts = ffi.new("bench_timespec")
  ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
  return tonumber(ts.tv_sec) * 1e6 + tonumber(ts.tv_nsec) / 1e3
end

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  total = tonumber(os.getenv("BENCH_TAGS"))
  nthreads = tonumber(os.getenv("BENCH_THREADS"))
  per = math.floor(total / nthreads)
  repo = os.getenv("BENCH_REPO")
  offset = tonumber(os.getenv("BENCH_TAG_OFFSET") or "0")
  done_file = os.getenv("BENCH_DONE")
  local f = assert(io.open(os.getenv("BENCH_MANIFEST"), "rb"))
  body = f:read("*a")
  f:close()
  headers = { ["Content-Type"] = os.getenv("BENCH_MANIFEST_TYPE") }
  filler = wrk.format("GET", "/v2/")
  verify_pending = (id == 0)
  sent, answered, errors, first_error = 0, 0, 0, 0
  started_us, finished_us = 0, 0
end

function request()
  if verify_pending then
    verify_pending = false
    return filler
  end
  if sent < per then
    if sent == 0 then started_us = now_us() end
    local path = string.format("/v2/%s/manifests/t%06d", repo, offset + id * per + sent)
    sent = sent + 1
    return wrk.format("PUT", path, headers, body)
  end
  return filler
end

local function finish()
  finished_us = now_us()
  wrk.thread:stop()
  local f = assert(io.open(done_file, "a"))
  f:write(id, "\n")
  f:close()
  local lines = 0
  for _ in io.lines(done_file) do lines = lines + 1 end
  if lines >= nthreads then ffi.C.kill(ffi.C.getpid(), SIGINT) end
end

function response(status, hdrs, resp_body)
  if status == 200 or answered >= per then
    return -- a filler GET /v2/
  end
  answered = answered + 1
  if status ~= 201 then
    errors = errors + 1
    if first_error == 0 then first_error = status end
  end
  if answered == per then finish() end
end

function done(summary, latency, requests)
  local puts, errs, first, t0, t1 = 0, 0, 0, math.huge, 0
  for _, t in ipairs(threads) do
    puts = puts + t:get("answered")
    errs = errs + t:get("errors")
    if first == 0 then first = t:get("first_error") end
    t0 = math.min(t0, t:get("started_us"))
    t1 = math.max(t1, t:get("finished_us"))
  end
  local all = tonumber(os.getenv("BENCH_TAGS"))
  local elapsed = (t1 > 0 and puts == all) and (t1 - t0) or 0
  io.write(string.format("BENCH elapsed_us=%d puts=%d put_errors=%d first_error=%d\n",
    elapsed, puts, errs, first))
end
