-- Asks the operator to promote-full through the request annotation (<action>@<id>); Argo CD self-heal
-- leaves an annotation it does not manage alone.
local os = require("os")
obj.metadata.annotations = obj.metadata.annotations or {}
obj.metadata.annotations["mcprollout.dev/request"] = "promote-full@argocd-" .. tostring(os.time())
return obj
