-- Argo CD health of a xynergy.io ScalingPolicy, from the operator's kstatus conditions.
-- Order: an unobserved generation is Progressing; Stalled (target missing, conflict, invalid
-- spec) is Degraded; spec.paused, or a paused target (Ready=False TargetPaused), is Suspended;
-- Ready=False (the metric cannot be read: the instances are held) is Degraded; Ready=True is Healthy, with the reactive fallback's reason
-- in the message when the policy's Degraded condition says the forecast is not used.
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
local stalled, ready, degraded = condition("Stalled"), condition("Ready"), condition("Degraded")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = says(stalled)
elseif obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = "Paused: no metrics read, nothing decided"
elseif ready ~= nil and ready.status == "False" and ready.reason == "TargetPaused" then
  hs.status = "Suspended"
  hs.message = says(ready)
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = says(ready)
  if degraded ~= nil and degraded.status == "True" then
    hs.message = hs.message .. " (fallback " .. says(degraded) .. ")"
  end
elseif ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = says(ready)
else
  hs.status = "Progressing"
  hs.message = "Waiting for the first sync"
end
return hs
