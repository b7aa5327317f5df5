@p1 @nodes @multihost
Feature: Several hosts: a queen and two nodes, each in its own network namespace
  A queen host and two node hosts get their own addresses on a test bridge (behind the guard
  route of TESTING.md). Each node runs a real sshd; the queen adds both through `rbee setup`,
  starts their hives over SSH, runs inference on each, and routes around a node whose link is
  cut until the link returns. Every client runs inside the queen's namespace.

  Background:
    Given token files for the queen, the hive and the worker
    And a test network with a queen host and the node hosts "nodea" and "nodeb"
    And each node host runs an SSH server that accepts the queen's key, with rbee installed
    And a queen on the queen host with those tokens and no local hive

  Scenario: Both nodes are added through the CLI and each runs an inference on its own hive
    When I add the nodes "nodea" and "nodeb" with rbee setup from the queen host
    Then rbee setup list-nodes on the queen host lists "nodea" and "nodeb" with their latency
    When I run rbee infer on node "nodea" from the queen host
    Then it streams tokens served by node "nodea"
    When I run rbee infer on node "nodeb" from the queen host
    Then it streams tokens served by node "nodeb"
    And the queen lists a serving worker on the hive of each node at that node's address
    And rbee setup list-nodes --json shows each node's hive preflight: rbee's version, a usable CPU backend and its RAM
    And each node's hive was given its own node key for the queen, refused there on the inference routes

  Scenario: A node whose link is cut is marked stale, requests go to the other node, and it recovers
    Given the nodes "nodea" and "nodeb" are added and each has served an inference
    When the link of node host "nodea" is cut
    Then the queen marks the hive of "nodea" stale
    And rbee infer without a node from the queen host is served by node "nodeb"
    And rbee infer on node "nodea" from the queen host fails with "NODE_STALE"
    When the link of node host "nodea" comes back
    Then the queen marks the hive of "nodea" fresh again
    And rbee infer on node "nodea" from the queen host is served by node "nodea"

  Scenario: Stopping the queen stops the hives it started on the nodes, leaving no process behind
    Given the nodes "nodea" and "nodeb" are added and each has served an inference
    When the queen is stopped with SIGTERM
    Then no rbee process is left on either node host
