-- Argo CD health check for citystack.io/SolutionStack.
-- The operator writes kstatus conditions: Ready, Reconciling, Stalled (and Paused while
-- spec.paused is true), plus status.observedGeneration.
-- argocd-cm scripts run with only Lua's base, table, package and a safe os library (no
-- string library unless useOpenLibs is set), so this script uses none of the others.
local hs = {}

local function findCondition(conditions, conditionType)
  for _, c in ipairs(conditions) do
    if c.type == conditionType then
      return c
    end
  end
  return nil
end

local function isTrue(c)
  return c ~= nil and c.status == "True"
end

-- The condition's message, else its reason, else nil.
local function describe(c)
  if c == nil then
    return nil
  end
  if c.message ~= nil and c.message ~= "" then
    return c.message
  end
  if c.reason ~= nil and c.reason ~= "" then
    return c.reason
  end
  return nil
end

-- A status the operator has not written yet, or written for an older generation, says
-- nothing about the current spec.
local generation = nil
if obj.metadata ~= nil then
  generation = obj.metadata.generation
end
local status = obj.status
if status == nil or status.observedGeneration == nil
    or (generation ~= nil and status.observedGeneration < generation) then
  hs.status = "Progressing"
  if generation ~= nil then
    hs.message = "Waiting for the operator to observe generation " .. generation
  else
    hs.message = "Waiting for the operator to write status"
  end
  return hs
end

local conditions = status.conditions or {}
local ready = findCondition(conditions, "Ready")
local reconciling = findCondition(conditions, "Reconciling")
local stalled = findCondition(conditions, "Stalled")

if obj.spec ~= nil and obj.spec.paused == true then
  hs.status = "Suspended"
  hs.message = describe(findCondition(conditions, "Paused")) or "spec.paused is true"
  return hs
end

if isTrue(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled) or "Stalled"
  return hs
end

if isTrue(ready) and not isTrue(reconciling) then
  hs.status = "Healthy"
  hs.message = describe(ready) or "Ready"
  return hs
end

hs.status = "Progressing"
hs.message = describe(ready) or describe(reconciling) or "Waiting for the operator to report Ready"
return hs
