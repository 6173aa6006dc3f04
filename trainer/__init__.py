"""The thin RL trainer (GRPO/RLOO advantages, PPO/CISPO/IS losses, LoRA): installed with the
``train`` extra. It consumes ``simenv.Episode`` records through simenv's public API only.
"""
