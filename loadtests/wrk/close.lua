-- Connection: close on every request (same as wrk -H "Connection: close"):
-- measures accept + connect cost.  wrk ... -s close.lua
wrk.headers["Connection"] = "close"
