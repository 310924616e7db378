"""CKKS-encrypted aggregation (mode ``ckks``): the coordinator adds ciphertexts it cannot decrypt.

Modules: :mod:`~fedcore.he.params` (parameters, validation), :mod:`~fedcore.he.pack` (pure
packing maths), :mod:`~fedcore.he.sealio` and :mod:`~fedcore.he.context` (SEAL objects),
:mod:`~fedcore.he.keys` (signed advertisements, sealed key envelopes), :mod:`~fedcore.he.relay`
(the coordinator's part of the key exchange), :mod:`~fedcore.he.server` and
:mod:`~fedcore.he.client` (the two sides of the mode), :mod:`~fedcore.he.messages` (stage bodies).
Rounds run only through the coordinator's engine and the client daemons (over gRPC or the
in-memory transport, :mod:`fedcore.simulation_memory`).

Protocol
--------
Set-up, once per coordinator run (so keys rotate with every start), over the clients present:

1. ``CKKS_KEY_ADVERTISE``: every client makes a fresh X25519 key pair and submits the public key
   with its certificate, signed with its certificate key over (label, federation, set-up id,
   parameter fingerprint, client id, public key).
2. ``CKKS_KEY_DISTRIBUTE``: the key holder (``settings["key_holder"]`` if present, else the first
   participant in sorted order) checks every peer's advertisement (signature; certificate issued
   by the federation CA, valid, CN = claimed id, a client certificate; in ``members`` if that list
   is set), generates the CKKS secret key and seals its serialization to each accepted peer
   (X25519 + HKDF label ``fedpsyau/ckks/v1/key`` + AES-256-GCM; the associated data binds
   holder, peer, federation, set-up, key id and parameters). It also submits the public context:
   the SEAL encryption parameters and nothing else.
3. ``CKKS_KEY_RECEIVE``: every other client checks the holder's signed advertisement, opens its
   envelope, checks the key against the announced key id and loads it.

If the key holder is missing at set-up (no advertisement or no distribution), the stage aborts
and the next attempt picks another holder (holders that failed are passed over). After set-up the
holder is nobody special: every client holds the key, so any of them may drop out. A client that
joins after set-up holds no key and sits out CKKS rounds until the next coordinator start.

A round (``CKKS_ENCRYPTED_INPUT`` then ``CKKS_DECRYPT``): each client clips its weight, forms
``[w*x, w, 1, bound]`` (``bound = max(|w*x|, w, 1) / 2^bound_shift_bits``), checks that no slot
can overflow ``max_abs`` when summed, and encrypts it with the secret key into seeded ciphertexts
(N reals each: complex packing). The coordinator checks each ciphertext (SEAL header, size,
parameters, level, scale) and adds it to the running sum at once; it then switches the sum down
to the download level (one prime by default: SEAL ``mod_switch_to``, no key needed, message and
noise kept exactly) and serves that as a blob. Each contributor checks the level and parameters of
every ciphertext it receives, decrypts the bound slot (the sum of all contributors' peaks, which
bounds every slot of the sum) and, if the sum might not fit one prime, fetches the upload-level
sum (``<blob>/full``, checked to switch down to exactly the served ciphertexts) instead. It then
checks that the decryption looks like an honest sum (bounded values, the count slot equals the
announced number of contributors, positive weight), rounds ``[sum w*x, sum w, count]`` to
multiples of 2^-round_bits and submits the integers (the bound slot stays with the clients); the
coordinator takes the value a strict majority agrees on (within one grid step) and applies its
strategy. A client missing at the input deadline is simply not in the sum; the weight and count
slots keep the result consistent.

Why round before anything decrypted leaves a client: CKKS decryption returns the message plus the
encryption noise, and exact decryptions handed to the holder of the ciphertexts reveal linear
equations in the secret key (Li & Micciancio, "On the security of homomorphic encryption on
approximate numbers", EUROCRYPT 2021). Rounding to a grid 2^(scale_bits - round_bits) units wide,
far above the noise (~2^12 units), removes the noise from what leaves the client; a client also
refuses a second decryption in the same round attempt.

Bytes on the wire (benchmarks/ckks.py, N = 8192, 1e6 parameters)
-----------------------------------------------------------------
Client upload 13.9 bytes per parameter with the defaults (moduli [57, 40, 60]; 7.8 with
``max_abs <= 2^14``, one 57-bit prime); the served sum 15.5, switched down to the 57-bit prime
(15.97 at the DPK-GAT size of 126,003 and 16.35 at 1e5, where the zero padding of the last
ciphertext weighs more). A client whose bound slot sends it to the upload-level sum downloads
43.5 in all (the served sum, then the upload-level one, 28.1). The previous default [60, 40, 60]
served 28.9 (upload 14.2); its 60-bit prime alone would give 16.1: the first prime is 57 bits so
that zstd squeezes the served sum below 16 bytes per parameter at the model sizes that matter.
TenSEAL's ``CKKSVector`` needs 57.4 with the same moduli, public-key or symmetric alike, and 32.0
at best (moduli [60, 40]). The savings, measured one at a time: seeded symmetric encryption halves
a ciphertext (SEAL replaces the second polynomial by a seed; TenSEAL's own symmetric mode does not
keep the seed); complex packing puts two reals in each of the N/2 slots; the encryption level
drops the primes ``max_abs`` does not need, and the download level the primes the sum does not
need; SEAL compresses with zstd by default (header compr_mode 2), which squeezes the unused high
bits of each prime's 64-bit words (24 of a 40-bit prime, 7 of a 57-bit one). No public,
relinearisation or Galois key exists anywhere: the coordinator's public context is the 80-byte
parameter set.

Threat model
------------
- Coordinator, honest but curious: holds only the encryption parameters (no public, relin,
  Galois or secret key; encryption is symmetric, so it cannot even encrypt) and learns only the
  rounded sum of at least ``min_clients`` (default 3, never below 2) inputs. Each *client* enforces
  its own ``min_clients`` too (from its own settings, default 3, never below 2): it refuses to
  decrypt a sum whose announced contributor count is lower, and it reads the true count from the
  count slot inside the ciphertexts (every contributor encrypts a 1 there), refusing a mismatch
  with the announced count or a count below ``min_clients``. So a lone ciphertext is never
  decrypted, whatever count the coordinator claims. The count slot sits in the last ciphertext
  of the frame only: a coordinator that deviates from the protocol could serve the honest last
  ciphertext beside other ciphertexts of one client's input (the same class of attack as the next
  but one; out of scope for an honest-but-curious coordinator).
- The bound slot: clients learn the sum of the contributors' peaks ``max(|w*x|, w, 1)`` (an
  aggregate, never returned to the coordinator); the coordinator learns one bit of it, whether a
  client fetched the upload-level sum (the peaks add up to more than one prime's 2^14).
- Clients share one secret key: a client colluding with the coordinator can decrypt every other
  client's input. TenSEAL has no threshold decryption; SecAgg+ is the mode without this weakness.
- A malicious coordinator could still add one client's ciphertext to itself m >= min_clients
  times: the count slot then reads m, and the decrypted "sum" is m times that client's frame. The
  count slot cannot tell that from m honest inputs; preventing it needs verifiable aggregation,
  which is out of scope (the coordinator is honest but curious).
- A ciphertext under another key with the same parameters cannot be told apart by the
  coordinator (semantic security); it spoils that round's sum, as any malicious client can.

Settings (the ``[aggregation.ckks]`` table): see :data:`fedcore.he.params.SETTINGS_KEYS`.
"""
