-- POST a body to every request (default 16 KiB; override: wrk ... -s post.lua -- 65536).
-- Used by loadtests/bench.py for the "post" scenario against /post.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/octet-stream"
wrk.body = string.rep("x", 16384)

function init(args)
  local size = tonumber(args[1])
  if size then
    wrk.body = string.rep("x", size)
  end
end
