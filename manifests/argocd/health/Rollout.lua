-- Argo CD health of a xynergy.io Rollout, from its phase and the operator's kstatus conditions.
-- Order: an unobserved generation is Progressing; Stalled (RolledBack, Aborted, Degraded: a
-- person must act) is Degraded; phase Paused (a pause step, a blue-green preview, spec.paused)
-- is Suspended, resumed by the promote action; Promoted is Healthy; Pending and Progressing
-- (traffic moving, analysis running) are Progressing.
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
local phase = obj.status.phase
local stalled, ready = condition("Stalled"), condition("Ready")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (phase or "Stalled") .. ": " .. says(stalled)
elseif phase == "Paused" then
  hs.status = "Suspended"
  hs.message = "Paused: " .. (obj.status.message or "waiting for promote")
elseif phase == "Promoted" and ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = "Promoted: " .. (obj.status.message or "")
else
  hs.status = "Progressing"
  hs.message = (phase or "Pending") .. ": " .. (obj.status.message or "")
end
return hs
