@p1 @ops @resources
Feature: Idle workers make room for a model that does not fit
  A spawn that lacks RAM or VRAM first stops the hive's least recently used idle workers that
  free enough, then starts (as Ollama unloads its least recently used model). A worker with a
  slot in use is never stopped; when stopping every idle one would not be enough nothing is
  stopped and the 507 stands; `evict_idle: 0` turns it off. Each eviction is an audit record and
  a metric. The hive's RAM budget (`RBEE_RAM_BUDGET_MIB=300`) fits one tiny-model worker, not two.

  Background:
    Given daemons start with RBEE_RAM_BUDGET_MIB set to "300"
    And a second model file, a copy of the tiny model

  Scenario: A second model's request evicts the idle first worker and is served
    Given a queen on free loopback ports
    And a task of the tiny model has been served through the queen
    And the hive's only worker serves the tiny model and its memory fits the budget once, not twice
    When a task of the second model streams through the queen
    Then it ends with an "end" event
    And the hive lists only a worker of the second model
    And the hive's audit log has a "worker.evicted" record for the first worker, the second model and "INSUFFICIENT_RAM"
    And the hive's metric rbee_hive_worker_evictions_total{reason="INSUFFICIENT_RAM"} is 1

  Scenario: A worker that is streaming is never evicted: the second model gets 507 and the stream goes on
    Given a queen on free loopback ports
    And a long task of the tiny model is streaming through the queen
    When I post a task of the second model to the queen
    Then the answer is status 507 with error code "INSUFFICIENT_RAM" and a correlation id
    And the long task of the tiny model still ends with an "end" event
    And the hive's audit log has no "worker.evicted" record

  Scenario: With evict_idle 0 the idle first worker stays and the second model gets 507
    Given daemons start with RBEE_EVICT_IDLE set to "0"
    And a queen on free loopback ports
    And a task of the tiny model has been served through the queen
    When I post a task of the second model to the queen
    Then the answer is status 507 with error code "INSUFFICIENT_RAM" and a correlation id
    And the hive lists only a worker of the tiny model, idle
    And the hive's audit log has no "worker.evicted" record
