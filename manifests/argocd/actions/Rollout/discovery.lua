-- Which Rollout actions apply now: promote and abort while the rollout is active (Pending,
-- Progressing, Paused); retry once it ended without promotion (Aborted, RolledBack, Degraded).
local actions = {}
local phase = nil
if obj.status ~= nil then phase = obj.status.phase end
local active = phase == nil or phase == "Pending" or phase == "Progressing" or phase == "Paused"
local ended = phase == "Aborted" or phase == "RolledBack" or phase == "Degraded"
actions["promote"] = {["disabled"] = not active}
actions["abort"] = {["disabled"] = not active}
actions["retry"] = {["disabled"] = not ended}
return actions
