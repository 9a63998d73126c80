-- Asks the operator to retry through the request annotation (<action>@<id>); Argo CD self-heal
-- leaves an annotation it does not manage alone.
local os = require("os")
obj.metadata.annotations = obj.metadata.annotations or {}
obj.metadata.annotations["mcprollout.dev/request"] = "retry@argocd-" .. tostring(os.time())
return obj
