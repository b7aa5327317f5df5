@p1 @ops @observability
Feature: Prometheus finds every daemon through the queen's HTTP service discovery
  `GET /v2/prometheus/targets` lists the queen, every hive and every worker in Prometheus'
  http_sd format with node, model, worker and role labels (scope admin). A real Prometheus
  (Debian's package) runs the scrape config of docs/monitoring.md against a running cluster.
  `--ready-public` opens the queen's /ready to load balancers; the hive answers /health too.

  Scenario: The discovery endpoint lists the queen, the local hive and its worker with their labels
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    When I stream a native task through the queen with the queen's token
    And I ask the queen for its Prometheus targets with the queen's token
    Then the answer is status 200
    And the targets are the queen, the hive of node "localhost" and the hive's worker with its model and id

  Scenario: The discovery endpoint needs an admin key
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    And a key "app" with scopes "inference"
    Then GET /v2/prometheus/targets on the queen answers 401 without a token
    And GET /v2/prometheus/targets on the queen answers 403 with the key "app"

  Scenario: A real Prometheus discovers the cluster through the documented scrape config and scrapes every daemon
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    When I stream a native task through the queen with the queen's token
    And Prometheus runs the scrape config of docs/monitoring.md against the queen
    Then Prometheus scrapes the queen, the hive and the worker with health "up" within 30 seconds
    And Prometheus's series up{role="worker"} carries the worker's node, model and id
    And every expression of docs/grafana/rbee.json evaluates in Prometheus

  Scenario: With --ready-public the queen's readiness answers without a token, and nothing else opens
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports, started with "--ready-public"
    Then GET /ready on the queen answers 200 without a token
    And GET /v2/status on the queen answers 401 without a token
    And GET /v2/prometheus/targets on the queen answers 401 without a token

  Scenario: Without --ready-public the queen's readiness needs a token
    Given token files for the queen, the hive and the worker
    And a queen with those tokens on free loopback ports
    Then GET /ready on the queen answers 401 without a token
    And GET /ready on the queen answers 200 with the queen's token

  Scenario: The hive answers /health without a token, as /v1/health
    Given token files for the queen, the hive and the worker
    And a hive with those tokens on free loopback ports
    Then GET /health and GET /v1/health on that hive answer 200 without a token
    And GET /v1/workers/list on that hive answers 401 without a token
