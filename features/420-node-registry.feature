@p1 @nodes
Feature: Node registry with SSH preflight
  `rbee setup add-node` registers a machine the queen reaches over SSH, only after a preflight
  (connection, host key, key, commands, rbee at the install path) has passed; each failure has
  its own code and says what to do. Tested against a real sshd on a loopback port.

  Background:
    Given token files for the queen, the hive and the worker
    And daemons start with RBEE_SSH_CONNECT_TIMEOUT_S set to "2"
    And daemons start with RBEE_SSH_RETRIES set to "2"
    And daemons start with RBEE_SSH_BACKOFF_INITIAL_S set to "0.2"
    And a queen with those tokens on free loopback ports
    And an SSH server on a free loopback port that accepts my test key
    And rbee is installed on that server at a test install path

  Scenario: Adding a node that passes preflight stores it and list-nodes shows it with its latency
    Given the queen knows the SSH server's host key
    When I run rbee setup add-node for "gpu-1" against the SSH server
    Then the command exits 0 and prints "added node gpu-1"
    When I run rbee setup list-nodes
    Then the command exits 0 and lists "gpu-1" at the SSH server with rbee's version and a latency in ms

  Scenario: Registered nodes survive a queen restart
    Given the queen knows the SSH server's host key
    When I run rbee setup add-node for "gpu-1" against the SSH server
    And the queen is restarted on the same data dir
    And I run rbee setup list-nodes
    Then the command exits 0 and lists "gpu-1" at the SSH server with rbee's version and a latency in ms

  Scenario: A duplicate node name is 409 NODE_EXISTS and --update replaces the node
    Given the queen knows the SSH server's host key
    When I run rbee setup add-node for "gpu-1" against the SSH server
    And I run rbee setup add-node for "gpu-1" against the SSH server with a second install path
    Then the command exits 1 with "NODE_EXISTS" on stderr
    And posting the same add request to the queen answers 409 with code "NODE_EXISTS"
    When I run rbee setup add-node for "gpu-1" against the SSH server with a second install path and --update
    Then the command exits 0 and prints "updated node gpu-1"
    And the queen lists "gpu-1" with the second install path

  Scenario: Removing a node forgets it and removing an unknown name is 404 NODE_NOT_FOUND
    Given the queen knows the SSH server's host key
    When I run rbee setup add-node for "gpu-1" against the SSH server
    And I run rbee setup remove-node for "gpu-1"
    Then the command exits 0 and prints "removed node gpu-1"
    And the queen lists no node
    When I run rbee setup remove-node for "gpu-1"
    Then the command exits 1 with "NODE_NOT_FOUND" on stderr
    And posting the same remove request to the queen answers 404 with code "NODE_NOT_FOUND"

  Scenario: A node whose host key the queen does not know is refused with SSH_UNKNOWN_HOST_KEY
    Given the queen's known_hosts file holds another server's key only
    When I run rbee setup add-node for "gpu-1" against the SSH server
    Then the command exits 1 with "SSH_UNKNOWN_HOST_KEY" on stderr
    And stderr names the server's host key fingerprint and "--accept-new-host-key"
    And the queen lists no node

  Scenario: --accept-new-host-key trusts a new host on first contact and a changed key is then refused
    When I run rbee setup add-node for "gpu-1" against the SSH server with --accept-new-host-key
    Then the command exits 0 and prints "added node gpu-1"
    And the queen's known_hosts file holds the SSH server's host key
    When the SSH server restarts on the same port with a new host key
    And I run rbee setup add-node for "gpu-2" against the SSH server with --accept-new-host-key
    Then the command exits 1 with "SSH_HOST_KEY_CHANGED" on stderr

  Scenario: A key the node does not accept is refused with SSH_AUTH_FAILED
    Given the queen knows the SSH server's host key
    When I run rbee setup add-node for "gpu-1" against the SSH server with a key it does not accept
    Then the command exits 1 with "SSH_AUTH_FAILED" on stderr
    And stderr says to add the key's public half to authorized_keys
    And the queen lists no node

  Scenario: A port nothing listens on is refused with SSH_UNREACHABLE after the retries, without waiting for a timeout
    Given the queen knows the SSH server's host key
    When I run rbee setup add-node for "gpu-1" against a loopback port nothing listens on
    Then the command exits 1 with "SSH_UNREACHABLE" on stderr
    And posting the same add request to the queen answers 503 with code "SSH_UNREACHABLE" after 3 attempts
    And that request took the backoff but less than one connect timeout

  Scenario: A port that accepts and never answers is refused with SSH_TIMEOUT after the retries, within the timeouts
    Given the queen knows the SSH server's host key
    When I run rbee setup add-node for "gpu-1" against a loopback port that accepts and never answers
    Then the command exits 1 with "SSH_TIMEOUT" on stderr
    And posting the same add request to the queen answers 504 with code "SSH_TIMEOUT" after 3 attempts
    And that request waited out the connect timeout on each attempt, plus the backoff

  Scenario: rbee missing at the install path is refused with RBEE_NOT_INSTALLED and says how to install it
    Given the queen knows the SSH server's host key
    When I run rbee setup add-node for "gpu-1" against the SSH server with install path "/nonexistent/rbee"
    Then the command exits 1 with "RBEE_NOT_INSTALLED" on stderr
    And stderr says how to install rbee at "/nonexistent/rbee"
    And the queen lists no node

  Scenario: A relative install path or a missing key file is refused with 400 before any SSH connection
    When I post a node with install path "opt/rbee" to the queen
    Then the queen answers 400 with code "INVALID_REQUEST"
    When I post a node with the key file "/nonexistent/key" to the queen
    Then the queen answers 400 with code "INVALID_REQUEST"
    And the SSH server logged no connection

  Scenario: Adding and removing nodes leaves node.add and node.remove in the queen's audit log
    Given the queen knows the SSH server's host key
    When I run rbee setup add-node for "gpu-1" against the SSH server
    And I run rbee setup remove-node for "gpu-1"
    And the queen is stopped with SIGTERM
    Then the queen's audit log has records "node.add, node.remove"
    And `rbee audit verify` on the queen's audit log exits 0
