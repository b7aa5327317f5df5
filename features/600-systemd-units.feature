@p2 @deploy
Feature: systemd units rendered by `rbee deploy systemd`, run by a real systemd user manager
  `rbee deploy systemd` writes rbee-queen.service, rbee-hive.service and rbee-worker@.service
  for this machine: Type=notify with a watchdog, tokens as systemd credentials, a stop timeout
  longer than the drain budget, and sandboxing that a user manager accepts, with rbee's install
  bound in read-only wherever that sandboxing would hide it (a checkout under /tmp).

  Scenario Outline: Every rendered <scope> unit passes systemd-analyze verify without a word on stderr
    Given token files for queen, hive and worker
    When I run "rbee deploy systemd <options>" for a test machine
    Then it exits 0 and names the three unit files it wrote
    When each written unit is checked with "systemd-analyze <analyze> verify"
    Then every check is silent on stderr

    # System units run as a dynamic user, who cannot enter /root, where this machine's Python
    # lives: the system example runs /usr/bin/true (verify needs an executable, not rbee).
    Examples:
      | scope  | options                                          | analyze |
      | user   | --user                                           | --user  |
      | system | --data-dir /var/lib/rbee --rbee /usr/bin/true    |         |

  Scenario: System units let the hive's workers (and pinned workers) open the NVIDIA GPUs, the queen none
    Given token files for queen, hive and worker
    When I run "rbee deploy systemd --data-dir /var/lib/rbee --rbee /usr/bin/true" for a test machine
    Then the written rbee-hive.service and rbee-worker@.service open the NVIDIA GPUs and no other device
    And the written rbee-queen.service sees no device but the pseudo devices

  Scenario: A misspelled option makes the same check complain
    Given token files for queen, hive and worker
    When I run "rbee deploy systemd --user" for a test machine
    And "KillMode" is misspelled "KilMode" in the written rbee-hive.service
    And each written unit is checked with "systemd-analyze --user verify"
    Then the check of rbee-hive.service reports "Unknown key" on stderr

  Scenario Outline: A token file that <problem> is refused with the fix, and nothing is written
    Given token files for queen, hive and worker
    And the <role> token file <problem>
    When I run "rbee deploy systemd --user" for a test machine
    Then it exits 1 with "<code>" and "<hint>" on stderr
    And no unit file was written

    Examples:
      | role   | problem       | code               | hint          |
      | hive   | has mode 0644 | TOKEN_FILE_INVALID | chmod 600     |
      | worker | is missing    | TOKEN_FILE_MISSING | token_urlsafe |

  Scenario: System units refuse an rbee that their dynamic user could not run
    Given token files for queen, hive and worker
    And an rbee script in the scenario's folder, which other users cannot enter
    When I run "rbee deploy systemd --data-dir /var/lib/rbee --rbee {workdir}/bin/rbee" for a test machine
    Then it exits 1 with "EXECUTABLE_NOT_ACCESSIBLE" and "closed to other users" on stderr
    And no unit file was written

  Scenario: Queen and hive units become active only once READY and then serve an inference
    Given a systemd user manager for deployed units
    When I run "rbee deploy systemd --user --install" for a test machine
    And I start rbee-hive.service with systemctl
    And I start rbee-queen.service with systemctl
    Then both units are active and their daemons answered as soon as systemctl returned
    And the units' status lines come from the daemons
    And "rbee infer" with the tiny model streams tokens through the queen
    And the worker runs in the hive unit and the queen unit holds only the queen

  Scenario: Units of an rbee installed under /tmp bind its install read-only, so PrivateTmp= does not hide it
    Given a systemd user manager for deployed units
    And an rbee virtualenv under /tmp
    When I run "rbee deploy systemd --user --install --rbee {venv}/bin/rbee" for a test machine
    Then every written unit binds that virtualenv read-only, and nothing outside /tmp and /var/tmp
    When each written unit is checked with "systemd-analyze --user verify"
    Then every check is silent on stderr
    When I start rbee-hive.service with systemctl
    And I start rbee-queen.service with systemctl
    Then both units are active and their daemons answered as soon as systemctl returned
    And the queen and the hive see that virtualenv read-only
    And "rbee infer" with the tiny model streams tokens through the queen

  Scenario: The daemons take their tokens from systemd credentials, never from a command line
    Given a systemd user manager for deployed units
    When I run "rbee deploy systemd --user --start" for a test machine
    Then it exits 0 and reports rbee-hive.service and rbee-queen.service active
    And the queen refuses a request without its token
    And "rbee infer" with the tiny model streams tokens through the queen
    And every daemon's log names systemd credentials as the source of its tokens
    And no process of the units has a token or a token file on its command line or in its environment

  Scenario: A worker unit whose decode loop hangs is killed by the watchdog and restarted
    Given a systemd user manager for deployed units
    And daemons start with RBEE_STALL_TIMEOUT_S set to "0.5"
    When I run "rbee deploy systemd --user --install --watchdog-sec 2" for a test machine
    And a worker instance "tiny" serves the tiny model with the fault "stall-after=3"
    And I start rbee-worker@tiny.service with systemctl
    And a generation is started on worker instance "tiny"
    Then systemd restarts rbee-worker@tiny.service within 20 seconds
    And the log of worker instance "tiny" says it stopped petting the watchdog
    And worker instance "tiny" answers its readiness check again

  Scenario: Stopping the hive unit leaves no worker process
    Given a systemd user manager for deployed units
    When I run "rbee deploy systemd --user --start" for a test machine
    And "rbee infer" with the tiny model streams tokens through the queen
    And I note the processes of rbee-hive.service
    And I stop rbee-hive.service with systemctl
    Then rbee-hive.service is inactive and none of the noted processes is alive

  Scenario: An unprivileged user's manager sets up every unit's sandbox and credentials
    Given an unprivileged user's systemd manager for deployed units
    When I run "rbee deploy systemd --user" for a test machine
    And the test machine's files are handed to that user
    And each written unit runs a probe of its credentials instead of rbee
    And I start rbee-hive.service with systemctl
    And I start rbee-queen.service with systemctl
    And I start rbee-worker@probe.service with systemctl
    Then rbee-hive.service, rbee-queen.service and rbee-worker@probe.service all ran their probe successfully
