"""Supabase Realtime: Broadcast over REST, minted user JWTs, and RLS compiled from the policy."""
