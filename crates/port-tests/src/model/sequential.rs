//! One case's system under test, and the sequential state-machine test over it:
//! `proptest-state-machine` generates op sequences from the [`Reference`] model, and
//! [`ModelTest`] runs each op through the use cases on a fresh store, compares the answer with
//! the model's, then reads the whole store through its ports, compares it with the model and
//! checks the invariants, after every step.

use std::marker::PhantomData;
use std::sync::Arc;

use domain::clock::{Clock, ManualClock};
use domain::idempotency::Outcome;
use domain::service::{Ports, Ticketing};
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest};

use crate::model::op::{self, Op};
use crate::model::reference::Model;
use crate::model::sut::{check_step, execute, Bindings};
use crate::model::view::{compare, invariants, StoreView};
use crate::model::world::{self, STARTING_CHARGES};
use crate::model::ModelStore;

/// The seed of the ids and token values a case's store makes (the same in every case: each
/// case has a store of its own, and a failure replays with the very same values).
const RANDOM_SEED: u64 = 0x6d6f_6465_6c00;

/// The start of every case.
#[must_use]
pub fn t0() -> time::OffsetDateTime {
    ManualClock::at_epoch().now()
}

/// One case: a fresh store set up as [`world`] says, the use cases over it, and the model beside
/// it. Field order matters: the use cases (and the store's ports) go before the harness.
pub struct Sut<H> {
    /// The clock every port reads (the store's clock too).
    pub clock: ManualClock,
    /// The use cases wired to the store.
    pub app: Ticketing,
    /// The model, in step with the store.
    pub model: Model,
    /// What the model's indices are in the store.
    pub bindings: Bindings,
    /// The steps run so far, for failure messages.
    pub trace: Vec<String>,
    /// The store under test.
    pub harness: H,
}

impl<H> std::fmt::Debug for Sut<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sut").field("model", &self.model).field("bindings", &self.bindings).finish_non_exhaustive()
    }
}

impl<H: ModelStore> Sut<H> {
    /// A fresh store with the world written to it, checked against the model.
    #[must_use]
    pub fn start() -> Self {
        Self::start_with(world::DRAW_CASE)
    }

    /// [`Sut::start`], with the case's draws seeded by `draw_case`.
    #[must_use]
    pub fn start_with(draw_case: u64) -> Self {
        let clock = ManualClock::at_epoch();
        let harness = H::new_store(clock.clone());
        let ports = Ports {
            clock: Arc::new(clock.clone()),
            random: Arc::new(world::ModelRandom::new(draw_case, RANDOM_SEED)),
            ..harness.ports()
        };
        let app = Ticketing::new(ports.clone(), world::policy());
        let s = world::starting_settings();
        let patch = domain::queue::SettingsPatch::new(domain::queue::SettingsChange {
            paused: Some(s.paused),
            admit_batch: Some(i64::from(s.admission.batch)),
            admit_interval_secs: Some(s.admission.interval.whole_seconds()),
            active_ttl_secs: Some(s.admission.active_ttl.whole_seconds()),
            max_active: Some(s.admission.max_active.map(i64::from)),
        })
        .expect("the starting settings are valid");
        ports.settings.update(&patch, None).expect("settings at set-up");
        for concert in world::catalogue(clock.now()) {
            assert!(ports.catalogue.create_concert(&concert, None).expect("catalogue at set-up"));
        }
        for r in 0..world::ROOMS.len() {
            app.create_room("model", &world::room_draft(r, clock.now())).expect("rooms at set-up");
        }
        for (user, charges) in STARTING_CHARGES.iter().enumerate() {
            for amount in *charges {
                let charged = app.charge(world::user(user), *amount, None).expect("charge at set-up");
                assert!(matches!(charged, Outcome::Fresh { .. }), "an unkeyed charge runs");
            }
        }
        let mut sut = Self {
            model: Model::with_draw_case(clock.now(), draw_case),
            clock,
            app,
            bindings: Bindings { room_tokens: vec![Vec::new(); world::ROOMS.len()], ..Bindings::default() },
            trace: Vec::new(),
            harness,
        };
        sut.check();
        sut
    }

    /// Fails the case with the steps so far.
    ///
    /// # Panics
    /// Always.
    pub fn fail(&self, what: &str) -> ! {
        panic!(
            "the store diverged from the model after these steps (op => step as resolved):\n  {}\n{what}",
            self.trace.join("\n  ")
        )
    }

    /// Runs one op on the store and the model and compares their answers.
    pub fn step(&mut self, op: &Op) {
        let step = self.model.resolve(op);
        let expect = self.model.apply(&step);
        crate::model::cover(&expect);
        let observed = execute(&self.app, &self.clock, &self.bindings, &step);
        self.trace.push(format!("{op:?} => {step:?}"));
        match check_step(&expect, &self.model, &self.bindings, &observed) {
            Ok(b) => self.bindings = b,
            Err(e) => self.fail(&format!("the last step answered differently:\n{e}")),
        }
    }

    /// Reads the store through its ports, compares it with the model and checks the
    /// invariants (and the store's own checks, if it has any).
    pub fn check(&mut self) {
        let view =
            StoreView::read(&self.app, &self.bindings.tokens, &self.bindings.room_tokens, &self.bindings.reservations);
        match compare(&self.model, &self.bindings, &view) {
            Ok(b) => self.bindings = b,
            Err(diffs) => self.fail(&format!("the store's state differs from the model's:\n{}", diffs.join("\n"))),
        }
        let mut bad = invariants(&view, &self.model);
        bad.extend(self.harness.store_problems());
        if !bad.is_empty() {
            self.fail(&format!("invariants violated:\n{}", bad.join("\n")));
        }
    }
}

/// The reference state machine: the model's state, the ops it generates, how they change it.
#[derive(Debug)]
pub struct Reference;

impl ReferenceStateMachine for Reference {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        // Each case draws with a seed of its own.
        any::<u64>().prop_map(|case| Model::with_draw_case(t0(), case)).boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        // Every op is valid in every state (see `op`): the state only biases the draw.
        op::op_in(&state.bias())
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        let step = state.resolve(op);
        state.apply(&step);
        state
    }
}

/// The state-machine test of store `H`.
#[derive(Debug)]
pub struct ModelTest<H>(PhantomData<H>);

impl<H: ModelStore> StateMachineTest for ModelTest<H> {
    type SystemUnderTest = Sut<H>;
    type Reference = Reference;

    fn init_test(ref_state: &Model) -> Sut<H> {
        Sut::start_with(ref_state.draw_case)
    }

    fn apply(mut sut: Sut<H>, ref_state: &Model, op: Op) -> Sut<H> {
        sut.step(&op);
        assert_eq!(sut.model, *ref_state, "the runner's model and proptest's moved apart");
        // The whole store after every step (here rather than in `check_invariants`: reading
        // the ledger binds the entries the step made, which needs `&mut`).
        sut.check();
        sut
    }
}
