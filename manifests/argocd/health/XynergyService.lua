-- Argo CD health of a xynergy.io XynergyService, from the operator's kstatus conditions.
-- Order: a generation the operator has not observed yet is Progressing; Stalled is Degraded;
-- spec.paused is Suspended; Reconciling (rolling out) is Progressing; Ready=True is Healthy,
-- also with reason Scaling (a serving revision adding instances, or one that cannot add some:
-- it serves, so Healthy as for kstatus and Flux; the message says what is missing and why).
local hs = {}
local function condition(t)
  if obj.status == nil or obj.status.conditions == nil then return nil end
  for _, c in ipairs(obj.status.conditions) do
    if c.type == t then return c end
  end
  return nil
end
local function says(c) return (c.reason or "") .. ": " .. (c.message or "") end
local generation = obj.metadata.generation or 0
if obj.status == nil or obj.status.observedGeneration == nil or obj.status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end
local stalled, reconciling, ready = condition("Stalled"), condition("Reconciling"), condition("Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = says(stalled)
elseif obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "Paused: the operator observes the backend and applies no change"
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = says(reconciling)
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = says(ready)
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = says(ready)
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
end
return hs
