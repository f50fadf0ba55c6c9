-- Pipelined requests: each connection writes DEPTH requests at once (default 16),
-- then reads DEPTH responses.  wrk ... -s pipeline.lua -- 16 [/path]
-- Used by loadtests/bench.py for the optional "pipeline" scenario.
local depth = 16
local req

function init(args)
  depth = tonumber(args[1]) or 16
  local path = args[2] or wrk.path
  local parts = {}
  for i = 1, depth do
    parts[i] = wrk.format(nil, path)
  end
  req = table.concat(parts)
end

function request()
  return req
end
