-- Finish the current pause or analysis step: the annotation the operator acts on once
-- (`kubectl xynergy rollout promote` writes the same).
local os = require("os")
if obj.metadata.annotations == nil then obj.metadata.annotations = {} end
obj.metadata.annotations["xynergy.io/rollout-action"] = "promote/argocd-" .. os.date("!%Y%m%dT%H%M%SZ")
return obj
