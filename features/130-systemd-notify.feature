@p1 @lifecycle @systemd
Feature: sd_notify under a real systemd user manager
  Daemons report READY=1 only when serving, a one-line STATUS=, and pet the watchdog only
  while their own loops make progress: a worker whose decode loop hangs is restarted.

  Scenario: A worker unit is READY once its model is loaded and reports its status
    Given a systemd user manager
    And a Type=notify unit running an rbee worker with the tiny model
    When I start the unit
    Then the unit is active and its worker answers its readiness check
    And the unit's status line reads "idle, slots 0/1 busy, model tiny.gguf"

  Scenario: A worker whose decode loop hangs stops petting the watchdog and is restarted
    Given a systemd user manager
    And daemons start with RBEE_FAULTS set to "stall-after=3"
    And daemons start with RBEE_ALLOW_FAULTS set to "1"
    And daemons start with RBEE_STALL_TIMEOUT_S set to "0.5"
    And a Type=notify unit running an rbee worker with the tiny model
    When I start the unit
    And a generation is started on the unit's worker
    Then systemd restarts the unit within 20 seconds
    And the unit's worker answers its readiness check again

  Scenario: Hive and queen units report READY with a status line and stop cleanly
    Given a systemd user manager
    And a Type=notify unit running an rbee hive
    And a Type=notify unit running an rbee queen that uses that hive
    When I start both units
    Then the hive unit's status line reads "0 workers"
    And the queen unit's status line mentions "0 tasks running"
    When I stop both units
    Then both units are inactive and no rbee process is left in them
