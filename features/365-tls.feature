@p1 @security
Feature: TLS on the queen's listener
  With `--tls-cert` and `--tls-key` the queen serves HTTPS only. The scenarios make their own CA
  and certificates (trustme); clients trust the CA explicitly (the `openai` client through its
  `http_client`, the `rbee` CLI and the local hive through SSL_CERT_FILE). SIGHUP re-reads the
  files: new connections get the new certificate, a bad file keeps the old one.

  Background:
    Given token files for the queen, the hive and the worker
    And a test CA with a certificate for 127.0.0.1 in files

  Scenario: The openai client streams a chat completion over HTTPS from a queen with TLS
    Given a queen with those tokens and that certificate on free loopback ports
    When the openai client trusting the test CA streams a chat completion of the tiny model
    Then the stream has content chunks and ends with a finish reason
    And the local hive's heartbeats reach the queen over HTTPS

  Scenario: Plain HTTP to the queen's TLS port gets no HTTP answer
    Given a queen with those tokens and that certificate on free loopback ports
    When I send a plain HTTP request to the queen's port
    Then no HTTP answer came back
    And the queen still answers its health check over HTTPS

  Scenario: A client that does not trust the test CA is refused the connection
    Given a queen with those tokens and that certificate on free loopback ports
    When the openai client trusting only the default CAs asks for a chat completion
    Then it fails with a certificate verification error

  Scenario: After the certificate files are replaced and SIGHUP, new connections get the new certificate
    Given a queen with those tokens and that certificate on free loopback ports
    And a long native task is streaming through the queen over HTTPS
    When the certificate files are replaced by a new certificate for 127.0.0.1
    And I send SIGHUP to the queen
    Then within 5 seconds a new connection to the queen is served the new certificate
    And the queen's log names the new certificate's fingerprint
    And the long task over HTTPS still ends with an "end" event
    And the openai client trusting the test CA streams a chat completion of the tiny model

  Scenario: A certificate reload that fails keeps the old certificate
    Given a queen with those tokens and that certificate on free loopback ports
    When the key file is replaced by one that is not a key
    And I send SIGHUP to the queen
    Then the queen's log says the TLS reload failed and the old certificate stays
    And a new connection to the queen is still served the first certificate
    And the queen still answers its health check over HTTPS

  Scenario: `rbee infer` and `rbee status` work against an https queen with SSL_CERT_FILE
    Given a queen with those tokens and that certificate on free loopback ports
    When I run `rbee infer` against the https queen with SSL_CERT_FILE naming the test CA
    Then `rbee infer` exits 0 and printed tokens
    When I run `rbee status` against the https queen with SSL_CERT_FILE naming the test CA
    Then `rbee status` exits 0

  Scenario: A queen started with a certificate but no key exits 1 saying why
    When I start `rbee queen` with --tls-cert but no --tls-key
    Then it exits with code 1 and its message mentions "--tls-cert and --tls-key go together"

  Scenario: A public bind without TLS warns that tokens cross the network in clear
    Given a queen with those tokens on 0.0.0.0 without TLS
    Then the queen's log warns that it listens on 0.0.0.0 without TLS

  Scenario: A public bind with TLS does not warn
    Given a queen with those tokens and that certificate on 0.0.0.0
    Then the queen's log does not warn about listening without TLS
