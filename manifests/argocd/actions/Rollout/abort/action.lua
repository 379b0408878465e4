-- All traffic back to the stable revision: the annotation the operator acts on once
-- (`kubectl xynergy rollout abort` writes the same).
local os = require("os")
if obj.metadata.annotations == nil then obj.metadata.annotations = {} end
obj.metadata.annotations["xynergy.io/rollout-action"] = "abort/argocd-" .. os.date("!%Y%m%dT%H%M%SZ")
return obj
