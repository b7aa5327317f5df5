@p1 @ops @deploy
Feature: Deploying from a fresh install: token files made on request, templates inside the package
  `rbee deploy systemd --init-tokens` creates the token files that are missing (a random token
  each, mode 0600, in a folder of mode 0700) and names each one on stderr; files that exist are
  kept. The unit and Nomad job templates ship inside the rbee package, so an installed wheel
  renders and checks them with no source checkout anywhere near.

  Scenario: --init-tokens creates every missing token file with mode 0600 in a folder of mode 0700
    Given no token folder exists yet
    When I run "rbee deploy systemd --user --init-tokens" for a test machine
    Then it exits 0 and names the three unit files it wrote
    And the queen, hive and worker token files exist with mode 0600 in a folder of mode 0700
    And stderr names each token file it created
    And the three token files hold different tokens

  Scenario: --init-tokens keeps the token files that exist and creates only the missing one
    Given token files for queen, hive and worker
    And the worker token file is missing
    When I run "rbee deploy systemd --user --init-tokens" for a test machine
    Then it exits 0 and names the three unit files it wrote
    And the queen and hive token files still hold their tokens
    And stderr names the worker token file as created and no other

  Scenario: --init-tokens leaves an existing token file of a loose mode to the usual refusal
    Given token files for queen, hive and worker
    And the hive token file has mode 0644
    When I run "rbee deploy systemd --user --init-tokens" for a test machine
    Then it exits 1 with "TOKEN_FILE_INVALID" and "chmod 600" on stderr
    And no unit file was written

  Scenario: A wheel installed into a fresh virtualenv renders the units from its own package
    Given rbee's wheel installed into a fresh virtualenv in a temporary folder
    And token files for queen, hive and worker
    When I run "rbee deploy systemd --user" with that virtualenv's rbee from the temporary folder
    Then it exits 0 and names the three unit files it wrote
    And the written rbee-hive.service runs that virtualenv's rbee
    And that virtualenv imports rbee from its own site-packages, where no jobs folder sits beside the package

  Scenario: A wheel installed into a fresh virtualenv checks its own Nomad jobs
    Given rbee's wheel installed into a fresh virtualenv in a temporary folder
    When I run "rbee deploy nomad --check" with that virtualenv's rbee from the temporary folder
    Then it exits 0 and checked the jobs "rbee-queen" and "rbee-hive" from that virtualenv's package
