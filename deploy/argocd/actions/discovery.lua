-- Which McpRollout actions apply now (resource.customizations.actions discovery.lua).
local actions = {}
local status = obj.status or {}
local rolling = status.canaryRevision ~= nil
local rolled_back = status.rollback ~= nil and not rolling
local paused = status.pausedByRequest == true
local gate_waits = false
for _, g in ipairs(status.gates or {}) do
  if g.state == "Waiting" then
    gate_waits = true
  end
end
actions["promote"] = {["disabled"] = not rolling}
actions["promote-full"] = {["disabled"] = not rolling}
actions["abort"] = {["disabled"] = not rolling}
actions["retry"] = {["disabled"] = not rolled_back}
actions["pause"] = {["disabled"] = paused or not rolling}
actions["resume"] = {["disabled"] = not paused}
actions["approve"] = {["disabled"] = not gate_waits}
return actions
