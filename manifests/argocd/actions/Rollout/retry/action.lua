-- Start an ended rollout again from its first step: the annotation the operator acts on once,
-- and spec.abort cleared (an abort still in the spec would end the retried rollout at once).
local os = require("os")
if obj.metadata.annotations == nil then obj.metadata.annotations = {} end
obj.metadata.annotations["xynergy.io/rollout-action"] = "retry/argocd-" .. os.date("!%Y%m%dT%H%M%SZ")
if obj.spec.abort == true then obj.spec.abort = false end
return obj
