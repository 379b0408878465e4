-- Ask the operator to converge the object now: the time of the request in the annotation
-- xynergy.io/resync-requested (as Flux's reconcile.fluxcd.io/requestedAt).
local os = require("os")
if obj.metadata.annotations == nil then obj.metadata.annotations = {} end
obj.metadata.annotations["xynergy.io/resync-requested"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
