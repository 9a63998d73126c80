-- Argo CD health check for mcprollout.dev/McpRollout (resource.customizations.health).
-- Follows the operator's kstatus conditions: Stalled → Degraded, Paused → Suspended,
-- Ready → Healthy, anything else → Progressing (including a spec the operator has not seen yet).
local hs = {}
local status = obj.status
if status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the mcp-rollout operator"
  return hs
end
local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end
local function condition(type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end
local message = status.message or ""
local stalled = condition("Stalled")
if (stalled ~= nil and stalled.status == "True") or status.phase == "Degraded" then
  hs.status = "Degraded"
  hs.message = message
  return hs
end
if status.phase == "Paused" then
  hs.status = "Suspended"
  hs.message = message
  return hs
end
local ready = condition("Ready")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
  return hs
end
hs.status = "Progressing"
hs.message = message
return hs
