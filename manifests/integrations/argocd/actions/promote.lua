-- Argo CD action "promote": what `kubectl kandle promote` does. It sets the annotation
-- kandle.dev/command, which the operator acts on once (recording it in status.lastCommand) and
-- then removes; the spec is not touched, so the Application shows no drift.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["kandle.dev/command"] = "promote@" .. os.time() .. math.random(100000, 999999)
return obj
