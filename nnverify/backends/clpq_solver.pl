%% ---------------------------------------------------------------------------------------------------
%% The search (the same in every program nnverify writes; nnverify/backends/clpq_solver.pl).
%%
%% nnv_problem/3 (generated, below) posts every linear constraint -- affine layers as equalities, the input
%% box and the sound bounds of each variable, stable ReLUs fixed, the triangle relaxation of the unstable
%% ones -- and then chooses one disjunct of the unsafe set (a choice point). What is left is a list of
%% unstable ReLUs and Signs. They are decided in the order given (layer by layer; inside a layer, the neuron
%% whose input interval straddles zero most evenly first): before each choice the neuron's input is bounded
%% again with inf/2 and sup/2 over the whole constraint store, so a neuron made stable by earlier choices
%% costs no choice point. The phase tried first is the one covering more of the input interval. Every
%% constraint posted is checked for feasibility by the solver at once, so an infeasible branch fails
%% immediately and Prolog backtracks into the next phase. When all are decided, the variables are fixed
%% one by one, in order (inputs first), at their infimum: this is a vertex of the feasible region and
%% every value is a number (a rational with clpq).
%% ---------------------------------------------------------------------------------------------------

%% nnv_solve(-Values): the values of all variables of one solution, in variable order; fails if none.
nnv_solve(Values) :-
    nnv_problem(Vars, Relus, Signs, Ints, none),
    nnv_search(Relus, Signs, Ints, none),
    nnv_ground(Vars),
    Values = Vars.

%% nnv_optimise(-Values): a solution minimising the objective (branch and bound over the choice points:
%% a branch is cut when its relaxation cannot beat the best solution found so far); fails if none.
nnv_optimise(Values) :-
    nb_setval(nnv_best, none),
    (   nnv_problem(Vars, Relus, Signs, Ints, Obj),
        nnv_search(Relus, Signs, Ints, Obj),
        inf(Obj, Min),
        ( {Obj = Min} -> true ; true ),
        nnv_ground(Vars),
        nb_setval(nnv_best, best(Min, Vars)),
        fail
    ;   true
    ),
    nb_getval(nnv_best, best(_, Values)).

nnv_search(Relus, Signs, Ints, Obj) :-
    nnv_relus(Relus, Obj),
    nnv_signs(Signs, Obj),
    nnv_ints(Ints, Obj).

%% nnv_promising(+Obj): no objective, or the relaxation can still beat the incumbent.
nnv_promising(none) :- !.
nnv_promising(Obj) :-
    nb_getval(nnv_best, Best),
    (   Best = best(Value, _)
    ->  inf(Obj, Lo), Lo < Value
    ;   true
    ).

nnv_relus([], _).
nnv_relus([relu(X, Y, ActiveFirst)|Rest], Obj) :-
    nnv_promising(Obj),
    (   inf(X, Lo), Lo >= 0
    ->  {Y = X}
    ;   sup(X, Hi), Hi =< 0
    ->  {Y = 0}
    ;   ActiveFirst == true
    ->  ( {X >= 0, Y = X} ; {X =< 0, Y = 0} )
    ;   ( {X =< 0, Y = 0} ; {X >= 0, Y = X} )
    ),
    nnv_relus(Rest, Obj).

%% ONNX Sign: 1 above zero, 0 at zero, -1 below.
nnv_signs([], _).
nnv_signs([sign(X, Y)|Rest], Obj) :-
    nnv_promising(Obj),
    (   inf(X, Lo), Lo > 0
    ->  {Y = 1}
    ;   sup(X, Hi), Hi < 0
    ->  {Y = -1}
    ;   ( {X > 0, Y = 1} ; {X < 0, Y = -1} ; {X = 0, Y = 0} )
    ),
    nnv_signs(Rest, Obj).

%% Integer variables: every integer value their current bounds allow, in increasing order.
nnv_ints([], _).
nnv_ints([V|Vs], Obj) :-
    nnv_promising(Obj),
    (   integer(V)
    ->  true
    ;   number(V)  % bound to a non-integer rational by propagation: no integer value in this branch
    ->  fail
    ;   inf(V, Lo), sup(V, Hi),
        L is ceiling(Lo), H is floor(Hi),
        between(L, H, V)
    ),
    nnv_ints(Vs, Obj).

%% Fix each variable in turn at its infimum (its supremum, or the middle, when strict inequalities keep the
%% infimum out of reach). The feasible values of one variable form an interval, so each step succeeds.
nnv_ground([]).
nnv_ground([V|Vs]) :-
    (   number(V)
    ->  true
    ;   inf(V, Lo), {V = Lo}
    ->  true
    ;   inf(V, Lo), sup(V, Hi)
    ->  (   {V = Hi}
        ->  true
        ;   Mid is (Lo + Hi) / 2, {V = Mid}
        )
    ;   inf(V, Lo)  % unbounded above
    ->  Next is Lo + 1, {V = Next}
    ;   sup(V, Hi)  % unbounded below
    ->  Next is Hi - 1, {V = Next}
    ;   {V = 0}
    ),
    nnv_ground(Vs).

%% nnv_decide(-Status, -Values): Status is sat (Values: all variables, in order) or unsat (Values = []).
nnv_decide(Status, Values) :-
    (   nnv_objective(none)
    ->  Goal = nnv_solve(Values0)
    ;   Goal = nnv_optimise(Values0)
    ),
    (   call(Goal)
    ->  Status = sat, Values = Values0
    ;   Status = unsat, Values = []
    ).

%% nnv_main: what `swipl query.pl` runs: prints sat and the counterexample, or unsat.
nnv_main :-
    (   nnv_decide(sat, Values)
    ->  format("sat~n"),
        nnv_print_witness(Values)
    ;   format("unsat~n")
    ).
