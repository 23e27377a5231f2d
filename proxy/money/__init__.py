"""What a request may spend and what it cost: token estimates, budgets, holds, settlement."""
