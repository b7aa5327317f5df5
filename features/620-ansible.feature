@p2 @deploy
Feature: ansible/site.yml installs rbee on a node and runs it under systemd
  The playbook connects over SSH, installs rbee into a virtualenv from a wheelhouse, writes the
  token files (0600) and one config file per daemon (checked with `rbee config check`), installs
  the units `rbee deploy systemd` renders, starts the hive and the queen and checks their health.
  The node here is this machine behind a real sshd on loopback, its service manager a real
  systemd user manager; the wheelhouse is built offline from this checkout.

  Background:
    Given a systemd user manager for deployed units
    And an sshd on loopback that lets the test key log in to the node
    And an inventory of that node for user units installed from this checkout's wheelhouse

  Scenario: The playbook converges: a first run leaves the queen and the hive healthy and serving, a second changes nothing
    When ansible-playbook runs site.yml with the test key
    Then it exits 0 and reports changes on the node
    And rbee-hive.service and rbee-queen.service are active and answer their health checks
    And each token file on the node has mode 0600 and no token appears in the playbook's output
    And its units are those `rbee deploy systemd --user` renders for the same settings, plus --config
    And the queen and the hive run with the config file the playbook wrote, which rbee config check accepts
    And "rbee infer" with the tiny model streams tokens through the queen
    When ansible-playbook runs site.yml with the test key again
    Then it exits 0 and reports changed=0
    And the queen and the hive kept their processes

  Scenario: A run with a key the node does not accept exits 4 (unreachable) and changes nothing
    When ansible-playbook runs site.yml with a key the node does not accept
    Then it exits 4 and reports the node unreachable
    And sshd accepted no login and nothing was installed on the node

  Scenario: A misspelled config key fails the run on the node's config check, so that file never replaces a good one
    When ansible-playbook runs site.yml with the test key and the queen setting "worker_slot: 4"
    Then it exits 2 and the output names "did you mean `worker_slots`?"
    And the queen's config file was never put in place and no unit was written on the node
