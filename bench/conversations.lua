-- Many concurrent Twilio conversations for wrk (see bench/load.py, which writes the data and runs wrk).
--
-- Run with exactly one connection per thread (wrk -tN -cN): a thread then has one request in flight at
-- a time, so every response belongs to the pair of the request before it, and the thread can keep
-- Twilio's cookie jar (one cookie per From/To pair) and check the count each reply states.
--
-- Arguments after "--": <data prefix> <loop|once|replay> <counts|none> [<requests/s of all threads> <threads>]
--   thread i reads <prefix>-<i>.tsv: one signed webhook per line, "pair<TAB>signature<TAB>form body",
--   already in send order. "loop" starts over at the end; "once" stops the thread after its last answer
--   and leaves <prefix>.done-<i> for the harness. "counts": each reply must state the pair's message
--   count ("#N"; a reply without one counts as message 1), which only holds if cookies round-trip.
--   "replay" (bench/replay.py) is for many connections on one thread, where an answer cannot be matched to
--   its request: each line carries a fourth field, the cookie recorded for it, sent as it is; the thread
--   loops over its lines, counting those it sends with a cookie and the replies that state a count past 1:
--   the two agree when the recorded cookies are accepted.
--   A rate paces the threads (each sends at rate/threads, on its own schedule, phases spread out) so
--   every server gets the same offered load; without one, each thread sends as soon as its answer came.

local threads = {}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- wrk starts each thread as soon as it is set up and only then starts its clock, so whatever a thread
-- does before its first request delays the clock while earlier threads already load the server. Each
-- thread therefore reads its data lazily, on its first request, and records when its first answer came;
-- done() reports the span from the earliest first answer to the end, and the harness uses that.
local ffi = require("ffi")
ffi.cdef([[
  struct bench_timeval { long tv_sec; long tv_usec; };
  int gettimeofday(struct bench_timeval *tv, void *tz);
]])
local timeval = ffi.new("struct bench_timeval")

local function now_us()
  ffi.C.gettimeofday(timeval, nil)
  return tonumber(timeval.tv_sec) * 1000000 + tonumber(timeval.tv_usec)
end

-- Per-thread state (the globals below are read by done() through thread:get()).
local heads, bodies, pair_of, recorded = {}, {}, {}, {}
local cookies, sent = {}, {}
local total, cursor, inflight, loaded = 0, 0, nil, false
local prefix, mode, check, host, filler
local interval_us, next_send_us, thread_count = nil, nil, 1

function init(args)
  prefix, mode, check = args[1], args[2] or "loop", args[3] or "counts"
  local rate = tonumber(args[4] or "0")
  thread_count = tonumber(args[5] or "1")
  if rate > 0 then
    interval_us = 1000000 * thread_count / rate
  end
  host = wrk.headers["Host"]
  filler = "GET /healthz HTTP/1.1\r\nHost: " .. host .. "\r\n\r\n"
  answered, bad_status, bad_sample, mismatches, roundtrips, max_count, sample = 0, 0, "", 0, 0, 0, ""
  cookied = 0
  first_answer_us = 0
end

local function load()
  local file = assert(io.open(prefix .. "-" .. id .. ".tsv", "r"))
  for line in file:lines() do
    local pair, signature, body, cookie = line:match("^(%d+)\t([^\t]+)\t([^\t]*)\t?([^\t]*)$")
    total = total + 1
    pair_of[total] = pair
    bodies[total] = body
    recorded[total] = cookie
    heads[total] = "POST /sms HTTP/1.1\r\n"
      .. "Host: " .. host .. "\r\n"
      .. "User-Agent: TwilioProxy/1.1\r\n"
      .. "Accept: */*\r\n"
      .. "Content-Type: application/x-www-form-urlencoded\r\n"
      .. "X-Twilio-Signature: " .. signature .. "\r\n"
      .. "Content-Length: " .. #body .. "\r\n"
  end
  file:close()
  loaded = true
end

-- wrk asks before each request how many milliseconds to wait; latency is measured from the send itself.
function delay()
  if interval_us == nil then
    return 0
  end
  local now = now_us()
  if next_send_us == nil then
    next_send_us = now + interval_us * id / thread_count -- spread the threads' phases over one interval
  else
    next_send_us = next_send_us + interval_us
  end
  if next_send_us < now then
    next_send_us = now -- behind schedule (the server was slow): send now, do not burst to catch up
    return 0
  end
  return math.floor((next_send_us - now) / 1000 + 0.5)
end

-- request() only builds the next message; response() commits it. wrk calls request() once more than it
-- sends (to inspect the request before the run), and that extra call must not count as sent.
function request()
  if not loaded then
    load()
  end
  if mode == "replay" then
    cursor = cursor % total + 1
    if recorded[cursor] ~= "" then
      cookied = cookied + 1
      return heads[cursor] .. "Cookie: " .. recorded[cursor] .. "\r\n\r\n" .. bodies[cursor]
    end
    return heads[cursor] .. "\r\n" .. bodies[cursor]
  end
  local index = cursor + 1
  if index > total then
    if mode == "once" then
      inflight = nil
      return filler -- only sent if wrk asks again before the thread has stopped; never counted
    end
    index = 1
  end
  inflight = index
  local cookie = cookies[pair_of[index]]
  if cookie then
    return heads[index] .. "Cookie: " .. cookie .. "\r\n\r\n" .. bodies[index]
  end
  return heads[index] .. "\r\n" .. bodies[index]
end

local function note_answer(status, body)
  if first_answer_us == 0 then
    first_answer_us = now_us()
  end
  answered = answered + 1
  if status < 200 or status > 299 then
    bad_status = bad_status + 1
    if bad_sample == "" then
      bad_sample = status .. " " .. body:sub(1, 300)
    end
  end
end

-- The count a reply states (a reply without one counts as message 1), noted for the summary.
local function note_count(body)
  local count = tonumber(body:match("#(%d+)")) or 1
  if count > 1 then
    roundtrips = roundtrips + 1
  end
  if count > max_count then
    max_count, sample = count, body
  end
  return count
end

local function count_replayed(status, body)
  note_answer(status, body)
  if check == "counts" and status >= 200 and status <= 299 then
    note_count(body)
  end
end

function response(status, headers, body)
  if mode == "replay" then
    return count_replayed(status, body)
  end
  if inflight == nil then
    return
  end
  cursor, inflight = inflight, nil
  local pair = pair_of[cursor]
  sent[pair] = (sent[pair] or 0) + 1
  note_answer(status, body)
  local set_cookie = headers["Set-Cookie"] or headers["set-cookie"]
  if set_cookie then
    local pair_cookie = set_cookie:match("^%s*([^;]*)")
    if pair_cookie:match("=$") then
      cookies[pair] = nil -- deleted
    else
      cookies[pair] = pair_cookie
    end
  end
  if check == "counts" and status == 200 and note_count(body) ~= sent[pair] then
    mismatches = mismatches + 1
  end
  if mode == "once" and cursor >= total then
    assert(io.open(prefix .. ".done-" .. id, "w")):close()
    wrk.thread:stop()
  end
end

local function json_string(s)
  s = s:gsub('[%c"\\]', function(c)
    return string.format("\\u%04x", c:byte())
  end)
  return '"' .. s .. '"'
end

function done(summary, latency, requests)
  local sums = { answered = 0, bad_status = 0, mismatches = 0, roundtrips = 0, cookied = 0 }
  local max, first_sample, first_bad, first_answer = 0, "", "", now_us()
  for _, thread in ipairs(threads) do
    local t = thread:get("first_answer_us")
    if t > 0 and t < first_answer then
      first_answer = t
    end
    for name, value in pairs(sums) do
      sums[name] = value + thread:get(name)
    end
    if thread:get("max_count") > max then
      max, first_sample = thread:get("max_count"), thread:get("sample")
    end
    if first_bad == "" then
      first_bad = thread:get("bad_sample")
    end
  end
  local e = summary.errors
  io.write(
    "BENCH_RESULT {",
    string.format('"requests":%d,"duration_us":%d,', summary.requests, summary.duration),
    string.format('"span_us":%d,', now_us() - first_answer),
    string.format('"answered":%d,"bad_status":%d,', sums.answered, sums.bad_status),
    string.format('"mismatches":%d,"roundtrips":%d,"max_count":%d,', sums.mismatches, sums.roundtrips, max),
    string.format('"cookied":%d,', sums.cookied),
    string.format(
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},',
      e.connect, e.read, e.write, e.status, e.timeout
    ),
    string.format(
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f},',
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
      latency.max, latency.mean
    ),
    '"sample":', json_string(first_sample), ',"bad_sample":', json_string(first_bad),
    "}\n"
  )
end
