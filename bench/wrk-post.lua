-- Copied from the project's shared intake benchmark (shared/bench/wrk-post.lua).
-- wrk script: POST one fixed, signed GitHub webhook delivery over and over.
--
--   wrk ... -s wrk-post.lua http://127.0.0.1:PORT/webhook -- BODY_FILE SIGNATURE [DELIVERY_ID] [EVENT]
--
-- BODY_FILE is sent byte-for-byte; SIGNATURE is the X-Hub-Signature-256 value
-- for it (see sign.py).  With UNIQUE_DELIVERY=0 the request is built once per
-- thread in init(), so wrk stays on its static-request fast path; by default
-- every request gets a fresh X-GitHub-Delivery, as GitHub's deliveries do.

local function slurp(path)
  local f = assert(io.open(path, "rb"), "cannot open body file: " .. tostring(path))
  local data = f:read("*a")
  f:close()
  return data
end

function init(args)
  local body_file = args[1] or os.getenv("BENCH_BODY_FILE")
  local signature = args[2] or os.getenv("BENCH_SIGNATURE")
  local delivery  = args[3] or os.getenv("BENCH_DELIVERY") or "6f9c1f5e-1d2b-4c3a-9e8f-7a6b5c4d3e21"
  local event     = args[4] or "workflow_run"
  assert(body_file and signature, "usage: -- BODY_FILE SIGNATURE [DELIVERY_ID] [EVENT]")

  wrk.method = "POST"
  wrk.body = slurp(body_file)
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["User-Agent"] = "GitHub-Hookshot/bench"
  wrk.headers["X-GitHub-Event"] = event
  wrk.headers["X-GitHub-Delivery"] = delivery
  wrk.headers["X-GitHub-Hook-ID"] = "400000001"
  wrk.headers["X-GitHub-Hook-Installation-Target-Type"] = "integration"
  wrk.headers["X-GitHub-Hook-Installation-Target-ID"] = "100001"
  wrk.headers["X-Hub-Signature-256"] = signature
end

local unique = os.getenv("UNIQUE_DELIVERY") ~= "0"
local counter = 0
local threads = 0

-- Runs in wrk's main state once per thread: give each thread its own id so
-- delivery ids never collide across threads or runs.
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
  thread:set("run", os.time())
end

if unique then
  function request()
    counter = counter + 1
    wrk.headers["X-GitHub-Delivery"] = string.format("%08x-%04x-4000-8000-%012x", run, tid, counter)
    return wrk.format()
  end
end
