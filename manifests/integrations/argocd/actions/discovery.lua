-- Argo CD resource actions for kandle.dev/ModelDeployment: which are offered now (Lua 5.1).
-- The same rules as `kubectl kandle`: promote, promote-full, abort and pause while a canary
-- walks its steps (resume instead of pause once paused); retry once it is aborted or while it is
-- being promoted; nothing without a canary.
local actions = {}
for _, name in ipairs({"promote", "promote-full", "abort", "retry", "pause", "resume"}) do
  actions[name] = {["disabled"] = true}
end
local phase = nil
if obj.status ~= nil and obj.status.canary ~= nil then
  phase = obj.status.canary.phase
end
if phase == "Progressing" or phase == "WaitingForPromote" or phase == "Paused" then
  actions["promote"]["disabled"] = false
  actions["promote-full"]["disabled"] = false
  actions["abort"]["disabled"] = false
  if phase == "Paused" then
    actions["resume"]["disabled"] = false
  else
    actions["pause"]["disabled"] = false
  end
elseif phase == "Aborted" or phase == "Promoting" then
  actions["retry"]["disabled"] = false
end
return actions
