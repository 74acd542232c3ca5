-- Argo CD health check for kandle.dev/ModelDeployment (Lua 5.1, as Argo CD runs it).
-- It reads only what the operator writes in status: observedGeneration, the conditions Ready,
-- Progressing, Degraded, Reconciling and Stalled, and a canary's phase. Installed by
-- argocd-cm-patch.yaml.
--   Degraded     the operator says Degraded=True (or Stalled=True), with its message
--   Suspended    spec.paused is set, or a canary waits at a step for `kubectl kandle promote`
--                or was paused by `kubectl kandle pause` (status.canary.phase)
--   Progressing  no status yet, a status for an older generation, or a revision rolling out
--                (a canary's step and weight), waiting for room or for an upgrade slot (the
--                condition's message says which)
--   Healthy      the status describes the current generation, Ready=True and nothing rolls out
local hs = {}

local function find(conditions, kind)
  if conditions == nil then
    return nil
  end
  for _, condition in ipairs(conditions) do
    if condition.type == kind then
      return condition
    end
  end
  return nil
end

local function is_true(condition)
  return condition ~= nil and condition.status == "True"
end

local function message(condition, fallback)
  if condition ~= nil and condition.message ~= nil and condition.message ~= "" then
    return condition.message
  end
  return fallback
end

local status = obj.status
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and (status.observedGeneration == nil or status.observedGeneration < generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local ready = find(status.conditions, "Ready")
local progressing = find(status.conditions, "Progressing")
local degraded = find(status.conditions, "Degraded")
local reconciling = find(status.conditions, "Reconciling")
local stalled = find(status.conditions, "Stalled")

if is_true(degraded) then
  hs.status = "Degraded"
  hs.message = message(degraded, "Degraded")
  return hs
end
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = message(stalled, "Stalled")
  return hs
end

if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = message(progressing, "spec.paused is set")
  return hs
end

local canary = status.canary
if canary ~= nil and (canary.phase == "Paused" or canary.phase == "WaitingForPromote") then
  hs.status = "Suspended"
  hs.message = canary.message or canary.phase
  return hs
end

if is_true(progressing) then
  hs.status = "Progressing"
  hs.message = message(progressing, "Rolling out")
  return hs
end
if is_true(reconciling) or status.canaryRevision ~= nil then
  hs.status = "Progressing"
  hs.message = message(reconciling, "Rolling out revision " .. tostring(status.canaryRevision))
  return hs
end

if is_true(ready) then
  hs.status = "Healthy"
  hs.message = message(ready, "Ready")
  return hs
end

hs.status = "Progressing"
hs.message = message(ready, "Waiting for the operator")
return hs
