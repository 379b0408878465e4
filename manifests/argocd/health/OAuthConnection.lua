-- Argo CD health of a xynergy.io OAuthConnection, from its phase and conditions.
-- Order: an unobserved generation is Progressing; Connected (Ready=True) is Healthy, unless
-- its Degraded condition is True (the tokens still work but a person must act before they
-- expire: re-authorize for Slack's user token at status.authorizationURL, fix the client
-- Secret, or what keeps the apiserver from storing refreshed tokens, TokensNotStored):
-- Degraded, with that condition's message and the URL; Refreshing or a transient
-- failure (Reconciling) is Progressing; PendingAuthorization waits for a person to visit
-- status.authorizationURL: Suspended; ReauthRequired, Revoked and Error (Stalled: tokens gone
-- or the spec is wrong) are Degraded.
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
local stalled, reconciling, ready = condition("Stalled"), condition("Reconciling"), condition("Ready")
local degraded = condition("Degraded")
if ready ~= nil and ready.status == "True" and degraded ~= nil and degraded.status == "True" then
  hs.status = "Degraded"
  hs.message = "Connected, degraded: " .. says(degraded)
  if obj.status.authorizationURL ~= nil then
    hs.message = hs.message .. "; status.authorizationURL: " .. obj.status.authorizationURL
  end
elseif ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = says(ready)
elseif reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = says(reconciling)
elseif phase == "PendingAuthorization" then
  hs.status = "Suspended"
  hs.message = "Waiting for authorization at " .. (obj.status.authorizationURL or "status.authorizationURL")
elseif stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = (phase or "Stalled") .. ": " .. says(stalled)
else
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
end
return hs
