-- Opens the approval gates the rollout waits at now (spec.gates[].approval), through the request
-- annotation (approve@<id>); Argo CD self-heal leaves an annotation it does not manage alone.
local os = require("os")
obj.metadata.annotations = obj.metadata.annotations or {}
obj.metadata.annotations["mcprollout.dev/request"] = "approve@argocd-" .. tostring(os.time())
return obj
